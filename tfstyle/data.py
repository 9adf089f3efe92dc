"""tf.data pipelines over folders of audio: layouts, label-disjoint splits, random clips and augmentation.

Layouts (`DataConfig.layout`):
  folder    any tree of audio files; the label is the first folder under data_dir (e.g. speech/<speaker>/x.wav)
  vctk      data_dir/wav48/<speaker>/*.wav (VCTK); the label is the speaker
  gtzan     data_dir/genres/<genre>/*.wav (GTZAN); the label is the genre
  manifest  a CSV with a `path` column (relative to the CSV's folder) and a label column
  auto      manifest if one is given, else vctk or gtzan if their folder is there, else folder

Each file is decoded and resampled once (any format tfstyle.audio_io reads) and cached; unreadable files are skipped
with a warning and counted. Every step then draws a random clip of `clip_seconds` from a random file, augments it
(time stretch, pitch shift, Gaussian noise; each switchable) and computes its log-magnitude STFT, all in the graph.
Batches are dicts: {"waveform": [batch, samples], "log_magnitude": [batch, frames, bins], "label": [batch] int32}.
"""

import csv
import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging

from tfstyle import audio_io, configs, spectral_ops
from tfstyle.errors import InputError

LAYOUTS = configs.LAYOUTS
_LABEL_COLUMNS = ("speaker_id", "speaker", "label", "genre", "instrument")


@dataclasses.dataclass(frozen=True)
class AudioFile:
    path: str
    label: str


@dataclasses.dataclass(frozen=True)
class Split:
    """Files of the training and validation sets; no label is in both (unless there is only one label)."""

    train: tuple[AudioFile, ...]
    validation: tuple[AudioFile, ...]
    labels: tuple[str, ...]  # every label, sorted; an element's "label" indexes this


def _audio_files_under(folder: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if os.path.splitext(f)[1].lower() in audio_io.SUPPORTED_EXTENSIONS and not f.startswith(".")]
    return found


def _labelled_by_first_folder(root: str) -> list[AudioFile]:
    files = []
    for path in _audio_files_under(root):
        relative = os.path.relpath(path, root)
        label = relative.split(os.sep)[0] if os.sep in relative else ""
        files.append(AudioFile(path, label))
    return files


def _read_manifest(manifest: str, label_column: str = "") -> list[AudioFile]:
    if not os.path.isfile(manifest):
        raise InputError(f"manifest not found: {manifest}")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = rows[0].keys() if rows else ()
    if label_column and label_column not in columns:
        raise InputError(f"{manifest}: no column {label_column!r}; it has {', '.join(columns)}")
    label_column = label_column or next((c for c in _LABEL_COLUMNS if c in columns), None)
    if "path" not in columns or label_column is None:
        raise InputError(f"{manifest}: needs a 'path' column and one of {', '.join(_LABEL_COLUMNS)}")
    folder = os.path.dirname(os.path.abspath(manifest))
    return [AudioFile(os.path.join(folder, row["path"]), row[label_column]) for row in rows]


def list_audio_files(data_dir: str, *, layout: str = "auto", manifest: str | None = None,
                     label_column: str = "") -> list[AudioFile]:
    """Every audio file of a dataset with its label, in a stable order; InputError if there are none.

    `label_column` picks the manifest column the split keeps disjoint (default: the first of speaker_id, speaker,
    label, genre, instrument that the CSV has), e.g. melody_id for a melody-disjoint split.
    """
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if layout == "manifest" or (layout == "auto" and manifest):
        if not manifest:
            raise InputError("layout 'manifest' needs --manifest=FILE.csv")
        files = _read_manifest(manifest, label_column)
    else:
        if not os.path.isdir(data_dir):
            raise InputError(f"data folder does not exist: {data_dir}")
        if layout == "auto":
            layout = next((name for name, sub in (("vctk", "wav48"), ("gtzan", "genres"))
                           if os.path.isdir(os.path.join(data_dir, sub))), "folder")
        subfolder = {"vctk": "wav48", "gtzan": "genres", "folder": ""}[layout]
        root = os.path.join(data_dir, subfolder)
        if not os.path.isdir(root):
            raise InputError(f"layout {layout!r} expects the folder {root}")
        files = _labelled_by_first_folder(root)
    if not files:
        raise InputError(f"no audio files ({', '.join(audio_io.SUPPORTED_EXTENSIONS)}) found in "
                         f"{manifest or data_dir}")
    return files


def split_files(files: list[AudioFile], *, validation_fraction: float, seed: int) -> Split:
    """Label-disjoint split: a seeded choice of whole labels (speakers, genres) goes to validation.

    With a single label (an unlabelled folder) the files themselves are split instead.
    """
    labels = sorted({f.label for f in files})
    rng = np.random.default_rng(seed)
    if validation_fraction <= 0:
        return Split(tuple(files), (), tuple(labels))
    if len(labels) >= 2:
        n_validation = min(len(labels) - 1, max(1, round(validation_fraction * len(labels))))
        held_out = set(rng.permutation(labels)[:n_validation])
        train = tuple(f for f in files if f.label not in held_out)
        validation = tuple(f for f in files if f.label in held_out)
    else:
        order = rng.permutation(len(files))
        n_validation = min(len(files) - 1, max(1, round(validation_fraction * len(files))))
        validation = tuple(files[i] for i in sorted(order[:n_validation]))
        train = tuple(files[i] for i in sorted(order[n_validation:]))
    if not train:
        raise InputError("the split left no training files; lower --validation_fraction or add data")
    return Split(train, validation, tuple(labels))


class _DecodeCounter:
    """Decodes files for tf.data, counting (and warning about) the ones that cannot be read."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.skipped: list[str] = []

    def __call__(self, path: tf.Tensor) -> tuple[np.ndarray, bool]:
        path = path.numpy().decode()
        try:
            waveform, _ = audio_io.load_audio(path, sample_rate=self.sample_rate)
            if not np.any(waveform.numpy()):
                raise InputError(f"{path}: silent")
            return waveform.numpy(), True
        except InputError as e:
            if path not in self.skipped:  # a partial first pass (a preview batch) may read a file twice
                logging.warning("skipping unreadable audio file: %s", e)
                self.skipped.append(path)
            return np.zeros([0], np.float32), False


def _decoded(files: tuple[AudioFile, ...], labels: tuple[str, ...], counter: _DecodeCounter) -> tf.data.Dataset:
    paths = [f.path for f in files]
    label_ids = [labels.index(f.label) for f in files]
    dataset = tf.data.Dataset.from_tensor_slices((paths, tf.constant(label_ids, tf.int32)))

    def decode(path, label):
        waveform, ok = tf.py_function(counter, [path], [tf.float32, tf.bool])
        waveform.set_shape([None])
        return {"waveform": waveform, "label": label, "ok": ok}

    def readable(element):
        return element["ok"]

    def without_flag(element):
        return {"waveform": element["waveform"], "label": element["label"]}

    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.filter(readable).map(without_flag)


def _pad_to(waveform: tf.Tensor, length) -> tf.Tensor:
    """Zero-pads a [samples] waveform at the end to at least `length` samples."""
    return tf.pad(waveform, [[0, tf.maximum(length - tf.shape(waveform)[0], 0)]])


def _crop(waveform: tf.Tensor, length: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A random window of `length` samples (zero-padded at the end if the file is shorter)."""
    waveform = _pad_to(waveform, length)
    start = tf.random.stateless_uniform([], seed, maxval=tf.shape(waveform)[0] - length + 1, dtype=tf.int32)
    return waveform[start:start + length]


def _read_at(waveforms: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
    """Linear interpolation of [batch, samples] at fractional sample positions [batch, n] (clamped to the ends)."""
    last = tf.shape(waveforms)[1] - 1
    positions = tf.clip_by_value(positions, 0.0, tf.cast(last, tf.float32))
    left = tf.minimum(tf.cast(tf.floor(positions), tf.int32), tf.maximum(last - 1, 0))
    weight = positions - tf.cast(left, tf.float32)
    right = tf.minimum(left + 1, last)
    return (tf.gather(waveforms, left, batch_dims=1) * (1.0 - weight)
            + tf.gather(waveforms, right, batch_dims=1) * weight)


# Phase-vocoder STFT: 75 % overlap keeps the phase estimates good for any sample rate we train at.
_VOCODER_FRAME, _VOCODER_STEP = 512, 128


def stretch_and_shift(waveforms: tf.Tensor, rates: tf.Tensor, semitones: tf.Tensor, length: int) -> tf.Tensor:
    """Time-stretches by `rates` (> 1 is faster) and pitch-shifts by `semitones`, per example, in one pass.

    A phase vocoder resynthesises each clip at tempo rate / 2^(semitones / 12) with its pitch unchanged; reading
    that back 2^(semitones / 12) times faster restores the tempo `rate` and moves the pitch. Every shape is fixed
    by `length`, so a whole batch is done with batched FFTs and gathers.

    Args:
        waveforms: [batch, samples]; at least length * max(rates) samples are read.
        rates: [batch] tempo factors.
        semitones: [batch] pitch shifts.
        length: output samples.

    Returns:
        [batch, length].
    """
    waveforms = tf.convert_to_tensor(waveforms, tf.float32)
    factors = tf.pow(2.0, tf.convert_to_tensor(semitones, tf.float32) / 12.0)
    vocoder_rates = tf.convert_to_tensor(rates, tf.float32) / factors
    spectrum = spectral_ops.stft(waveforms, frame_length=_VOCODER_FRAME, frame_step=_VOCODER_STEP)
    n_frames = tf.shape(spectrum)[1]
    # Output frames needed to cover length * factor samples of the resynthesis, for the largest factor.
    max_factor = tf.reduce_max(factors)
    n_out = tf.cast(tf.math.ceil(length * max_factor / _VOCODER_STEP), tf.int32) + 2
    positions = tf.cast(tf.range(n_out), tf.float32)[tf.newaxis, :] * vocoder_rates[:, tf.newaxis]
    left = tf.minimum(tf.cast(tf.floor(positions), tf.int32), n_frames - 2)
    weight = tf.clip_by_value(positions - tf.cast(left, tf.float32), 0.0, 1.0)[..., tf.newaxis]
    magnitude = tf.abs(spectrum)
    stretched = (tf.gather(magnitude, left, batch_dims=1) * (1.0 - weight)
                 + tf.gather(magnitude, left + 1, batch_dims=1) * weight)
    # Each bin's phase advances per output frame by the phase difference measured between the input frames it
    # reads. Only phasors are needed, so the advances are unit complex numbers multiplied together: no atan2 and
    # no unwrapping (both are the same modulo 2 pi), which makes this several times faster.
    step_phasors = _unit(spectrum[:, 1:] * tf.math.conj(spectrum[:, :-1]))
    advances = tf.gather(step_phasors, left[:, :-1], batch_dims=1)  # [batch, n_out - 1, bins]
    advances = tf.concat([_unit(spectrum[:, :1]), advances], axis=1)
    # cumprod runs fastest along the innermost axis; renormalise away the rounding drift of the product.
    phasors = _unit(tf.transpose(tf.math.cumprod(tf.transpose(advances, [0, 2, 1]), axis=-1), [0, 2, 1]))
    resynthesis = spectral_ops.inverse_stft(
        tf.cast(stretched, tf.complex64) * phasors,
        length=(n_out - 1) * _VOCODER_STEP, frame_length=_VOCODER_FRAME, frame_step=_VOCODER_STEP)
    read_positions = tf.cast(tf.range(length), tf.float32)[tf.newaxis, :] * factors[:, tf.newaxis]
    return _read_at(resynthesis, read_positions)


def _unit(z: tf.Tensor) -> tf.Tensor:
    """z / |z|, and 1 where z is 0 (a silent bin keeps its phase)."""
    magnitude = tf.abs(z)
    return tf.where(magnitude > 1e-20, z / tf.cast(tf.maximum(magnitude, 1e-20), z.dtype), tf.ones_like(z))


def time_stretch(waveform: tf.Tensor, rate: float) -> tf.Tensor:
    """Tempo change of one [samples] waveform, pitch kept: `rate` > 1 is faster. Returns samples / rate samples."""
    length = int(int(waveform.shape[0]) / float(rate))
    return stretch_and_shift(waveform[tf.newaxis], [rate], [0.0], length)[0]


def pitch_shift(waveform: tf.Tensor, semitones: float) -> tf.Tensor:
    """Pitch change of one [samples] waveform by `semitones`, duration kept."""
    return stretch_and_shift(waveform[tf.newaxis], [1.0], [semitones], int(waveform.shape[0]))[0]


def augment(waveforms: tf.Tensor, config: configs.DataConfig, seed: tf.Tensor, length: int) -> tf.Tensor:
    """Random time stretch, pitch shift and Gaussian noise per example, as switched on in `config`.

    Args:
        waveforms: [batch, samples] with samples >= length * (1 + config.time_stretch).
        seed: stateless seed [2] for this batch.
        length: output samples.

    Returns:
        [batch, length].
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    batch = tf.shape(waveforms)[0]
    if config.time_stretch > 0 or config.pitch_shift_semitones > 0:
        rates = tf.random.stateless_uniform([batch], seeds[0], 1.0 - config.time_stretch, 1.0 + config.time_stretch)
        semitones = tf.random.stateless_uniform([batch], seeds[1], -config.pitch_shift_semitones,
                                                config.pitch_shift_semitones)
        waveforms = stretch_and_shift(waveforms, rates, semitones, length)
    waveforms = waveforms[:, :length]
    if config.noise_stddev > 0:
        waveforms += config.noise_stddev * tf.random.stateless_normal(tf.shape(waveforms), seeds[2])
    return waveforms


def _examples(waveforms: tf.Tensor, labels: tf.Tensor, config: configs.DataConfig) -> dict[str, tf.Tensor]:
    log_magnitude = spectral_ops.log_magnitude_spectrogram(
        waveforms, frame_length=config.frame_length, frame_step=config.frame_step)
    return {"waveform": waveforms, "log_magnitude": log_magnitude, "label": labels}


def clip_samples(config: configs.DataConfig) -> int:
    return int(round(config.clip_seconds * config.sample_rate))


class AudioDataset:
    """The training and validation pipelines of one dataset folder.

    Attributes:
        split: the files of each side and the label vocabulary.
        skipped: paths of files that could not be decoded (filled in as the pipelines first read them).
    """

    def __init__(self, config: configs.DataConfig):
        self.config = config
        files = list_audio_files(config.data_dir, layout=config.layout, manifest=config.manifest or None,
                                 label_column=config.label_column)
        self.split = split_files(files, validation_fraction=config.validation_fraction, seed=config.seed)
        self._decoder = _DecodeCounter(config.sample_rate)
        self._cache = {}

    @property
    def skipped(self) -> list[str]:
        return self._decoder.skipped

    def _cached(self, side: str) -> tf.data.Dataset:
        if side not in self._cache:
            files = self.split.train if side == "train" else self.split.validation
            self._cache[side] = _decoded(files, self.split.labels, self._decoder).cache()
        return self._cache[side]

    def train(self, batch_size: int, *, augment_clips: bool | None = None) -> tf.data.Dataset:
        """Endless batches of random, augmented clips (deterministic for the config's seed)."""
        config = self.config
        augment_clips = config.augment if augment_clips is None else augment_clips
        length = clip_samples(config)
        # Crop with headroom so that a speeded-up clip still fills `length` samples.
        headroom = int(length * (1.0 + config.time_stretch)) + 1 if augment_clips else length

        def crop(element, seed):
            return _crop(element["waveform"], headroom, seed), element["label"]

        def make(waveforms, labels, seed):
            if augment_clips:
                waveforms = augment(waveforms, config, seed, length)
            return _examples(waveforms, labels, config)

        files = self._cached("train").repeat().shuffle(max(len(self.split.train), 1), seed=config.seed)
        seeds = tf.data.Dataset.random(seed=config.seed).batch(2)
        clips = tf.data.Dataset.zip(files, seeds).map(crop, num_parallel_calls=tf.data.AUTOTUNE)
        batches = clips.batch(batch_size, drop_remainder=True)
        # Augmentation runs on whole batches (batched FFTs), with a seed of its own per batch.
        batch_seeds = tf.data.Dataset.random(seed=config.seed + 1).batch(2)
        dataset = tf.data.Dataset.zip(batches, batch_seeds).map(
            lambda clip_batch, seed: make(*clip_batch, seed), num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def validation(self, batch_size: int) -> tf.data.Dataset:
        """One pass over the validation files, cut into consecutive clips (the last one zero-padded); no
        augmentation."""
        length = clip_samples(self.config)

        def clips(element):
            pieces = tf.signal.frame(_pad_to(element["waveform"], length), length, length, pad_end=True)
            return tf.data.Dataset.from_tensor_slices((pieces, tf.fill([tf.shape(pieces)[0]], element["label"])))

        def make(waveforms, labels):
            waveforms.set_shape([None, length])
            return _examples(waveforms, labels, self.config)

        dataset = self._cached("validation").flat_map(clips)
        return dataset.batch(batch_size).map(make, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
