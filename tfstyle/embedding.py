"""One record per audio file from a SavedModel signature: the library under `tfstyle.embed` and its Beam pipeline.

A record holds the file's path, the model's zoo name and version, the signature, and for each of the signature's
outputs either the vector itself ([batch, D] outputs, e.g. serving_default's embedding) or statistics over time of
a feature map ([batch, frames, channels] or [batch, frames, freq, channels]): its Gram matrix over time (time and
frequency for 4-D maps), as transfer matches it, or its time mean and standard deviation where a Gram would be too
large (more than MAX_GRAM_CHANNELS channels, e.g. the random CNN's 4096 filters). Records are `tf.train.Example`s.
"""

import os

import numpy as np
import tensorflow as tf

from tfstyle import audio_io, loading, losses, spectral_ops
from tfstyle.errors import InputError

MAX_GRAM_CHANNELS = 1024  # a 1024 x 1024 Gram is 4 MB per file; beyond it, time mean and std instead
DEFAULT_SIGNATURE = "serving_default"


def resolve_saved_model(model: str) -> str:
    """The SavedModel version folder of a --model value: a zoo name's newest shipped version, or a path."""
    if loading.is_saved_model_path(model):
        return model
    path = loading.shipped_model_path(model)
    if path is None:
        raise InputError(f"no shipped SavedModel named {model} under {loading.shipped_models_dir()}")
    return path


class Embedder:
    """A tfstyle SavedModel and one of its signatures, mapping waveforms to records.

    Args:
        path: a SavedModel version folder (or a folder of versions: the newest).
        signature: the signature to run; it must take one waveform ([batch, samples]) or one log-magnitude
            spectrogram ([batch, frames, bins]), which is computed with the model's own STFT settings.
    """

    def __init__(self, path: str, signature: str = DEFAULT_SIGNATURE):
        self.loaded = loading.LoadedModel(path)
        if not self.loaded.has_signature(signature):
            raise InputError(f"{self.loaded.path} has no signature {signature!r}; it has: "
                             f"{', '.join(self.loaded.info['signatures'])}")
        inputs = self.loaded.saved_model.signatures[signature].structured_input_signature[1]
        if len(inputs) != 1 or next(iter(inputs)) not in ("waveform", "log_magnitude"):
            raise InputError(f"signature {signature!r} takes ({', '.join(inputs)}); embed runs signatures of one "
                             "waveform or log_magnitude")
        self.signature_name = signature
        self.takes_waveform = next(iter(inputs)) == "waveform"
        self.function = self.loaded.signature(signature)
        self.signal = self.loaded.signal_config()
        folder = os.path.basename(os.path.normpath(self.loaded.path))
        self.version = int(folder) if folder.isdigit() else 0

    @property
    def sample_rate(self) -> int:
        return self.signal["sample_rate"]

    def read(self, path: str) -> np.ndarray:
        """A file's waveform at the model's rate (InputError, naming the file, if it cannot be used)."""
        waveform, _ = audio_io.load_audio(path, sample_rate=self.sample_rate,
                                          min_samples=self.signal["frame_length"])
        return waveform.numpy()

    def outputs(self, waveforms: np.ndarray) -> list[dict[str, np.ndarray]]:
        """The signature's statistics (see the module) of a batch of equal-length waveforms [batch, samples]."""
        inputs = tf.convert_to_tensor(waveforms, tf.float32)
        if not self.takes_waveform:
            inputs = spectral_ops.log_magnitude_spectrogram(inputs, frame_length=self.signal["frame_length"],
                                                            frame_step=self.signal["frame_step"])
        results = self.function(inputs)
        return [{name: value for key in sorted(results) for name, value in _statistics(key, results[key][i])}
                for i in range(waveforms.shape[0])]

    def record(self, path: str, outputs: dict[str, np.ndarray]) -> dict:
        """The record of one file: its path, the model, version, signature and `outputs`."""
        return {"path": path, "model": self.loaded.name, "version": self.version,
                "signature": self.signature_name, "outputs": outputs}

    def embed_file(self, path: str) -> dict:
        """The record of one file, on its own: what the Beam pipeline's records must equal."""
        return self.record(path, self.outputs(self.read(path)[np.newaxis])[0])


def _statistics(key: str, value: tf.Tensor) -> list[tuple[str, np.ndarray]]:
    """(name, array) pairs for one example's output: a vector as it is, a feature map as statistics over time."""
    if value.shape.rank <= 1:
        return [(key, value.numpy().astype(np.float32))]
    over = "time_frequency" if value.shape.rank == 3 else "time"
    matrix = losses.positions_by_channels(value[tf.newaxis], over)[0]  # [positions, channels]
    if matrix.shape[-1] <= MAX_GRAM_CHANNELS:
        return [(f"{key}/gram", losses.gram_matrix(value[tf.newaxis], over=over)[0].numpy())]
    mean, variance = tf.nn.moments(matrix, axes=[0])
    return [(f"{key}/mean", mean.numpy()), (f"{key}/std", tf.sqrt(variance).numpy())]


def to_example(record: dict) -> bytes:
    """A record as a serialised tf.train.Example: path, model, signature (bytes), version (int64), and for each
    output NAME the flattened float list NAME and its shape NAME/shape."""
    feature = {
        "path": _bytes(record["path"]), "model": _bytes(record["model"]),
        "signature": _bytes(record["signature"]),
        "version": tf.train.Feature(int64_list=tf.train.Int64List(value=[record["version"]])),
    }
    for name, value in record["outputs"].items():
        feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(value)))
        feature[f"{name}/shape"] = tf.train.Feature(int64_list=tf.train.Int64List(value=np.shape(value)))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def from_example(serialised: bytes) -> dict:
    """The record a `to_example` string holds."""
    features = tf.train.Example.FromString(serialised).features.feature
    outputs = {name: np.asarray(features[name].float_list.value, np.float32).reshape(
                   tuple(features[f"{name}/shape"].int64_list.value))
               for name in features if name + "/shape" in features}
    text = {name: features[name].bytes_list.value[0].decode() for name in ("path", "model", "signature")}
    return {**text, "version": int(features["version"].int64_list.value[0]), "outputs": outputs}


def _bytes(text: str) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()]))
