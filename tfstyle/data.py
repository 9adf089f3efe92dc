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
Elements are dicts: {"waveform": [samples], "log_magnitude": [frames, bins], "label": int32}.
"""

import csv
import dataclasses
import math
import os

import numpy as np
import tensorflow as tf
from absl import logging

from tfstyle import audio_io, configs, spectral_ops
from tfstyle.errors import InputError

LAYOUTS = ("auto", "folder", "vctk", "gtzan", "manifest")
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


def _read_manifest(manifest: str) -> list[AudioFile]:
    if not os.path.isfile(manifest):
        raise InputError(f"manifest not found: {manifest}")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = rows[0].keys() if rows else ()
    label_column = next((c for c in _LABEL_COLUMNS if c in columns), None)
    if "path" not in columns or label_column is None:
        raise InputError(f"{manifest}: needs a 'path' column and one of {', '.join(_LABEL_COLUMNS)}")
    folder = os.path.dirname(os.path.abspath(manifest))
    return [AudioFile(os.path.join(folder, row["path"]), row[label_column]) for row in rows]


def list_audio_files(data_dir: str, *, layout: str = "auto", manifest: str | None = None) -> list[AudioFile]:
    """Every audio file of a dataset with its label, in a stable order; InputError if there are none."""
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if layout == "manifest" or (layout == "auto" and manifest):
        if not manifest:
            raise InputError("layout 'manifest' needs --manifest=FILE.csv")
        files = _read_manifest(manifest)
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


def _crop(waveform: tf.Tensor, length: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A random window of `length` samples (zero-padded at the end if the file is shorter)."""
    waveform = tf.pad(waveform, [[0, tf.maximum(length - tf.shape(waveform)[0], 0)]])
    start = tf.random.stateless_uniform([], seed, maxval=tf.shape(waveform)[0] - length + 1, dtype=tf.int32)
    return waveform[start:start + length]


def _interpolate(waveform: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """Linear-interpolation resampling of a [samples] waveform to `length` samples."""
    n = tf.shape(waveform)[0]
    positions = tf.linspace(0.0, tf.cast(n - 1, tf.float32), length)
    left = tf.minimum(tf.cast(tf.floor(positions), tf.int32), n - 2)
    weight = positions - tf.cast(left, tf.float32)
    return tf.gather(waveform, left) * (1.0 - weight) + tf.gather(waveform, left + 1) * weight


def time_stretch(waveform: tf.Tensor, rate: tf.Tensor, *, frame_length: int = 512, frame_step: int = 128):
    """Phase-vocoder time stretch: `rate` > 1 is faster (shorter), pitch unchanged. [samples] -> [samples / rate]."""
    spectrum = spectral_ops.stft(waveform, frame_length=frame_length, frame_step=frame_step)
    n_frames = tf.shape(spectrum)[0]
    steps = tf.range(0.0, tf.cast(n_frames - 1, tf.float32), rate)
    left = tf.cast(tf.floor(steps), tf.int32)
    weight = (steps - tf.cast(left, tf.float32))[:, tf.newaxis]
    magnitude = tf.abs(spectrum)
    stretched = tf.gather(magnitude, left) * (1.0 - weight) + tf.gather(magnitude, left + 1) * weight
    # Phase advances by each bin's measured instantaneous frequency per hop, accumulated over output frames.
    phase = tf.math.angle(spectrum)
    expected = tf.linspace(0.0, math.pi * frame_step, tf.shape(spectrum)[1])  # 2 pi k hop / n_fft
    deviation = phase[1:] - phase[:-1] - expected
    deviation -= 2.0 * math.pi * tf.round(deviation / (2.0 * math.pi))
    advance = tf.gather(deviation + expected, tf.minimum(left, n_frames - 2))
    output_phase = phase[0] + tf.concat([tf.zeros_like(advance[:1]), tf.cumsum(advance[:-1], axis=0)], axis=0)
    length = tf.cast(tf.cast(tf.shape(waveform)[0], tf.float32) / rate, tf.int32)
    new_spectrum = tf.complex(stretched * tf.cos(output_phase), stretched * tf.sin(output_phase))
    return spectral_ops.inverse_stft(new_spectrum, length=length, frame_length=frame_length, frame_step=frame_step)


def pitch_shift(waveform: tf.Tensor, semitones: tf.Tensor) -> tf.Tensor:
    """Shifts pitch by `semitones` keeping the duration: time-stretch, then resample back to the input length."""
    factor = tf.pow(2.0, semitones / 12.0)
    return _interpolate(time_stretch(waveform, 1.0 / factor), tf.shape(waveform)[0])


def augment(waveform: tf.Tensor, config: configs.DataConfig, seed: tf.Tensor) -> tf.Tensor:
    """Random time stretch, pitch shift and Gaussian noise, each as switched on in `config`; same length out."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    length = tf.shape(waveform)[0]
    if config.time_stretch > 0:
        rate = tf.random.stateless_uniform([], seeds[0], 1.0 - config.time_stretch, 1.0 + config.time_stretch)
        waveform = _crop(time_stretch(waveform, rate), length, seeds[1])
    if config.pitch_shift_semitones > 0:
        semitones = tf.random.stateless_uniform([], seeds[2], -config.pitch_shift_semitones,
                                                config.pitch_shift_semitones)
        waveform = pitch_shift(waveform, semitones)
    if config.noise_stddev > 0:
        waveform += config.noise_stddev * tf.random.stateless_normal(tf.shape(waveform), seeds[3])
    return waveform


def _example(waveform: tf.Tensor, label: tf.Tensor, config: configs.DataConfig) -> dict[str, tf.Tensor]:
    log_magnitude = spectral_ops.log_magnitude(spectral_ops.stft_magnitude(
        waveform, frame_length=config.frame_length, frame_step=config.frame_step))
    return {"waveform": waveform, "log_magnitude": log_magnitude, "label": label}


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
        files = list_audio_files(config.data_dir, layout=config.layout, manifest=config.manifest or None)
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
        # Crop with headroom so a time stretch still fills the clip after it is cut back to length.
        headroom = int(length * (1.0 + config.time_stretch)) + 1 if augment_clips else length

        def make(element, seed):
            seeds = tf.random.experimental.stateless_split(seed, 2)
            waveform = _crop(element["waveform"], headroom, seeds[0])
            if augment_clips:
                waveform = augment(waveform, config, seeds[1])
            waveform = waveform[:length]
            waveform.set_shape([length])
            return _example(waveform, element["label"], config)

        files = self._cached("train").repeat().shuffle(max(len(self.split.train), 1), seed=config.seed)
        seeds = tf.data.Dataset.random(seed=config.seed).batch(2)
        dataset = tf.data.Dataset.zip(files, seeds).map(make, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def validation(self, batch_size: int) -> tf.data.Dataset:
        """One pass over the validation files: the first clip of each, no augmentation."""
        length = clip_samples(self.config)

        def make(element):
            waveform = tf.pad(element["waveform"], [[0, tf.maximum(length - tf.shape(element["waveform"])[0], 0)]])
            waveform = waveform[:length]
            waveform.set_shape([length])
            return _example(waveform, element["label"], self.config)

        dataset = self._cached("validation").map(make, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
