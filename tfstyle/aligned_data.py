"""Pairs of one utterance in two voices, frame by frame aligned: the training data of content features.

A parallel corpus has the same content (a sentence, a melody) under several labels (voices, instruments), each a
file with the same name in its label's folder: speech/<voice>/h01.wav. Every element pairs a random clip of one
label's file with the stretch of another label's file that says the same, found by dynamic time warping of
per-file normalised MFCCs (librosa.sequence.dtw), and lists `frames_per_pair` moments of the first clip with the
frame of the second that is aligned to each.

Batches are dicts:
  log_magnitude, paired_log_magnitude  [batch, frames, bins], zero-padded at the end
  frames, paired_frames                [batch] int32: each clip's real frames
  aligned                              [batch, frames_per_pair, 2] int32: (frame in the first, frame in the second)
  label, paired_label                  [batch] int32: the two clips' labels (indices into split.labels)
The split is label-disjoint as in tfstyle.data. With augmentation on, each clip's spectrum is scaled in frequency by
its own random factor within +-pitch_shift_semitones (pitch and formants together, like a shorter or longer vocal
tract), so that the features cannot lean on where a voice's formants sit.
"""

import collections
import os

import librosa
import numpy as np
import tensorflow as tf
from absl import logging

from tfstyle import audio_io, chunking, configs, data, spectral_ops
from tfstyle.errors import InputError

FRAMES_PER_PAIR = 24
_VALIDATION_PAIRS = 64


class AlignedPairs:
    """The training and validation pipelines of aligned pairs from one parallel-corpus folder.

    Attributes:
        split: the files of each side and the label vocabulary (as tfstyle.data.AudioDataset's).
        skipped: paths of files that could not be decoded.
    """

    def __init__(self, config: configs.DataConfig):
        self.config = config
        files = data.list_audio_files(config.data_dir, layout=config.layout, manifest=config.manifest or None,
                                      label_column=config.label_column)
        self.split = data.split_files(files, validation_fraction=config.validation_fraction, seed=config.seed)
        self.skipped: list[str] = []
        self._waveforms: dict[str, np.ndarray] = {}
        self._mfccs: dict[str, np.ndarray] = {}
        self._alignments: dict[tuple[str, str], np.ndarray] = {}
        self._groups = {side: self._group(getattr(self.split, side)) for side in ("train", "validation")}
        if not self._groups["train"]:
            raise InputError(f"{config.data_dir}: no utterance is there under two labels in the training split; "
                             "content training needs a parallel corpus (the same file name in several voices' "
                             "folders)")

    def _group(self, files) -> list[list[data.AudioFile]]:
        """Files with one content (file name) under at least two labels, grouped; each file decoded once."""
        by_content = collections.defaultdict(list)
        for f in files:
            if self._load(f.path) is not None:
                by_content[os.path.splitext(os.path.basename(f.path))[0]].append(f)
        return [group for _, group in sorted(by_content.items()) if len({f.label for f in group}) >= 2]

    def _load(self, path: str) -> np.ndarray | None:
        if path not in self._waveforms:
            try:
                waveform = audio_io.load_audio(path, sample_rate=self.config.sample_rate)[0].numpy()
                if len(waveform) < self.config.frame_length or not np.any(waveform):
                    raise InputError(f"{path}: shorter than one STFT frame, or silent")
            except InputError as e:
                logging.warning("skipping unreadable audio file: %s", e)
                self.skipped.append(path)
                return None
            self._waveforms[path] = waveform
            mfcc = librosa.feature.mfcc(y=waveform, sr=self.config.sample_rate, n_mfcc=20,
                                        n_fft=self.config.frame_length, hop_length=self.config.frame_step)[1:]
            # Per-file normalised, so that a voice's own average timbre does not pull the alignment.
            self._mfccs[path] = (mfcc - mfcc.mean(1, keepdims=True)) / (mfcc.std(1, keepdims=True) + 1e-6)
        return self._waveforms[path]

    def alignment(self, first: str, second: str) -> np.ndarray:
        """For every STFT frame of `first`, the frame of `second` aligned to it (monotonic), by DTW."""
        key = (first, second)
        if key not in self._alignments:
            _, path = librosa.sequence.dtw(X=self._mfccs[first], Y=self._mfccs[second], metric="euclidean")
            aligned = np.zeros(self._mfccs[first].shape[1], np.int32)
            aligned[path[:, 0]] = path[:, 1]  # the path runs backwards, so each frame keeps its earliest match
            self._alignments[key] = aligned
        return self._alignments[key]

    def _pairs(self, side: str, seed: int, count: int | None):
        """Python generator of `count` (None: endless) elements of one side, seeded."""
        rng = np.random.default_rng(seed)
        groups = self._groups[side]
        step, frame_length = self.config.frame_step, self.config.frame_length
        clip_frames = max(2, int(round(self.config.clip_seconds * self.config.sample_rate / step)))
        made = 0
        while count is None or made < count:
            group = groups[rng.integers(len(groups))]
            first, second = rng.choice(len(group), 2, replace=False)
            first, second = group[first], group[second]
            if first.label == second.label:
                continue
            aligned = self.alignment(first.path, second.path)
            # From clip_seconds up to the whole file: whole utterances, with their silences at either end, are
            # what the content features are also asked to summarise.
            frames = int(rng.integers(min(clip_frames, len(aligned)), len(aligned) + 1))
            start = int(rng.integers(0, len(aligned) - frames + 1))
            second_start, second_end = aligned[start], aligned[start + frames - 1] + 1
            moments = rng.choice(frames, FRAMES_PER_PAIR, replace=frames < FRAMES_PER_PAIR)
            yield {
                "segment": _frames_segment(self._waveforms[first.path], start, start + frames, step, frame_length),
                "paired_segment": _frames_segment(self._waveforms[second.path], second_start, second_end, step,
                                                  frame_length),
                "frames": np.int32(frames),
                "paired_frames": np.int32(second_end - second_start),
                "aligned": np.stack([moments, aligned[start + moments] - second_start], -1).astype(np.int32),
                "label": np.int32(self.split.labels.index(first.label)),
                "paired_label": np.int32(self.split.labels.index(second.label)),
            }
            made += 1

    def _dataset(self, side: str, batch_size: int, seed: int, count: int | None,
                 augment: bool) -> tf.data.Dataset:
        signature = {"segment": tf.TensorSpec([None], tf.float32), "paired_segment": tf.TensorSpec([None], tf.float32),
                     "frames": tf.TensorSpec([], tf.int32), "paired_frames": tf.TensorSpec([], tf.int32),
                     "aligned": tf.TensorSpec([FRAMES_PER_PAIR, 2], tf.int32),
                     "label": tf.TensorSpec([], tf.int32), "paired_label": tf.TensorSpec([], tf.int32)}
        elements = tf.data.Dataset.from_generator(lambda: self._pairs(side, seed, count), output_signature=signature)
        batches = elements.padded_batch(batch_size, drop_remainder=count is None)
        config = self.config

        def make(batch, batch_seed):
            result = {key: batch[key] for key in ("frames", "paired_frames", "aligned", "label", "paired_label")}
            seeds = tf.random.experimental.stateless_split(batch_seed, 2)
            for i, (segment, key) in enumerate((("segment", "log_magnitude"),
                                                ("paired_segment", "paired_log_magnitude"))):
                magnitude = tf.abs(spectral_ops.stft_of_padded(
                    batch[segment], frame_length=config.frame_length, frame_step=config.frame_step))
                if augment and config.pitch_shift_semitones > 0:
                    semitones = tf.random.stateless_uniform(tf.shape(magnitude)[:1], seeds[i],
                                                            -config.pitch_shift_semitones,
                                                            config.pitch_shift_semitones)
                    magnitude = scale_frequencies(magnitude, tf.pow(2.0, semitones / 12.0))
                result[key] = spectral_ops.log_magnitude(magnitude)
            return result

        batch_seeds = tf.data.Dataset.random(seed=seed + 1).batch(2)
        return tf.data.Dataset.zip(batches, batch_seeds).map(make).prefetch(tf.data.AUTOTUNE)

    def train(self, batch_size: int) -> tf.data.Dataset:
        """Endless batches of aligned pairs of training labels (deterministic for the config's seed)."""
        return self._dataset("train", batch_size, self.config.seed, None, self.config.augment)

    def validation(self, batch_size: int) -> tf.data.Dataset:
        """The same fixed pairs of validation labels every time, without augmentation (empty if the split holds
        no utterance under two validation labels)."""
        count = _VALIDATION_PAIRS if self._groups["validation"] else 0
        return self._dataset("validation", batch_size, self.config.seed, count, False)


def _frames_segment(waveform: np.ndarray, start: int, end: int, step: int, frame_length: int) -> np.ndarray:
    """The samples whose `spectral_ops.stft_of_padded` gives frames [start, end) of the waveform's STFT."""
    return chunking.padded_samples(tf.constant(waveform), start * step, (end - 1) * step + frame_length,
                                   frame_length).numpy()


def scale_frequencies(magnitude: tf.Tensor, factors: tf.Tensor) -> tf.Tensor:
    """Magnitudes [batch, frames, bins] with every spectrum stretched along frequency by `factors` [batch]:
    bin k takes the value at k / factor (linear interpolation; beyond the top bin, the top bin's value)."""
    bins = tf.shape(magnitude)[-1]
    positions = tf.cast(tf.range(bins), tf.float32)[tf.newaxis, :] / factors[:, tf.newaxis]  # [batch, bins]
    positions = tf.minimum(positions, tf.cast(bins - 1, tf.float32))
    left = tf.minimum(tf.cast(tf.floor(positions), tf.int32), bins - 2)
    weight = (positions - tf.cast(left, tf.float32))[:, tf.newaxis, :]
    gather = lambda index: tf.gather(magnitude, index, axis=2, batch_dims=1)  # noqa: E731
    return gather(left) * (1.0 - weight) + gather(left + 1) * weight
