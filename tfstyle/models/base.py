"""What zoo models share: the serving signatures every export has, the signal a trained model works on, and the
training interface train_lib calls.

A zoo model owns what is particular to it: its features, its SavedModel signatures (`serving_functions`, in the
way TF Model Garden's ExportModule subclasses do), what tfstyle.evaluate measures of it (`EVALUATIONS`), and its
capabilities in its registry entry (trainable, any sample rate, kind of transfer).
"""

import keras
import tensorflow as tf

from tfstyle import data, spectral_ops


def waveform_spec(name: str = "waveform") -> tf.TensorSpec:
    """Waveforms [batch, samples] at the model's rate, batch and length free."""
    return tf.TensorSpec([None, None], tf.float32, name=name)


def log_magnitude_spec(bins: int) -> tf.TensorSpec:
    """log1p |STFT| spectrograms [batch, frames, bins], batch and length free."""
    return tf.TensorSpec([None, None, bins], tf.float32, name="log_magnitude")


FRAMES_SPEC = tf.TensorSpec([], tf.int32, name="frames")

# The output keys of each signature, the same in every model ("features" returns one key per feature layer).
SIGNATURE_OUTPUTS = {
    "serving_default": ("embedding",),
    "encode": ("code",),  # the VAE adds "code_log_variance"
    "decode": ("decoded",),
    "reconstruct": ("reconstruction",),
    "recombine": ("log_magnitude",),
}


def log_magnitude_of(waveform: tf.Tensor, signal: dict) -> tf.Tensor:
    return spectral_ops.log_magnitude_spectrogram(
        waveform, frame_length=signal["frame_length"], frame_step=signal["frame_step"])


class ZooModel(keras.Model):
    """Base of every zoo model.

    Subclasses define `features(log_magnitude) -> {layer: activations}` and `feature_layer_names`, and extend
    `serving_functions` with their own signatures, `serving_default` at least. Each signature has the same output
    keys in every model (SIGNATURE_OUTPUTS), so a client of one model's server works with another's.
    """

    EVALUATIONS: tuple[str, ...] = ("identification",)  # what tfstyle.evaluate measures
    EXPORTS_WEIGHTS = True  # False: the SavedModel rebuilds its weights (the random CNN, from its seed)
    # What every feature layer represents, "style" (who is speaking, which instrument) or "content" (what is said
    # or played); a model whose layers differ overrides `feature_roles`. Today's autoencoders learn both at once
    # in every layer and transfer matches them as style, so that is their role.
    FEATURE_ROLE = "style"

    @classmethod
    def training_data(cls, config):
        """The pipelines tfstyle.train draws batches from (`train(batch_size)`, `validation(batch_size)`,
        `split`, `skipped`): random clips of single files (tfstyle.data), unless a model needs other examples."""
        return data.AudioDataset(config)

    def feature_roles(self) -> dict[str, str]:
        """{feature layer: "style" | "content"}: exported in tfstyle_model.json; transfer takes its default style
        and content layers from it."""
        return {name: self.FEATURE_ROLE for name in self.feature_layer_names}

    def serving_functions(self, signal: dict) -> dict:
        """{signature name: tf.function with an input signature} for a SavedModel of this model.

        Args:
            signal: {"sample_rate", "frame_length", "frame_step"} the exported functions work at.
        """
        bins = signal["frame_length"] // 2 + 1
        return {"features": tf.function(lambda log_magnitude: dict(self.features(log_magnitude)),
                                         input_signature=[log_magnitude_spec(bins)])}


class FixedSignalModel(ZooModel):
    """A zoo model trained on one signal: sample rate and STFT settings travel with its config and exports."""

    def __init__(self, *, sample_rate: int, frame_length: int, frame_step: int, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.bins = frame_length // 2 + 1

    def signal_config(self) -> dict:
        return {"sample_rate": self.sample_rate, "frame_length": self.frame_length, "frame_step": self.frame_step}

    def get_config(self):
        return {**super().get_config(), **self.signal_config()}


class SpectrogramAutoencoder(FixedSignalModel):
    """Base of the autoencoders over log-magnitude spectrograms [batch, frames, bins].

    Subclasses define `encode`, `decode`, `features` and `feature_layer_names`; this class gives them the L2
    reconstruction loss, `reconstruct`, and the signal settings (sample rate, STFT) they were trained with.
    """

    EVALUATIONS = ("identification", "reconstruction")

    def call(self, log_magnitude, training=False):
        return self.reconstruct(log_magnitude, training=training)

    def reconstruct(self, log_magnitude, training=False):
        return self.decode(self.encode(log_magnitude, training=training), tf.shape(log_magnitude)[1],
                           training=training)

    def compute_losses(self, batch: dict, training: bool = False) -> dict:
        """{"total_loss", "reconstruction_loss"} for a batch from tfstyle.data; the mean over the batch."""
        target = batch["log_magnitude"]
        reconstruction = self.reconstruct(target, training=training)
        loss = tf.reduce_mean(tf.square(reconstruction - target))
        return {"total_loss": loss, "reconstruction_loss": loss}

    def summary_spectrograms(self, batch: dict) -> dict:
        """Spectrograms worth looking at in TensorBoard: input and reconstruction, [batch, frames, bins]."""
        return {"input": batch["log_magnitude"], "reconstruction": self.reconstruct(batch["log_magnitude"])}

    def serving_functions(self, signal: dict) -> dict:
        functions = super().serving_functions(signal)
        # The code's shape: conv [batch, frames', bins', channels], LSTM [batch, units].
        code = self.encode(tf.zeros([1, 16, self.bins]))
        code_spec = tf.TensorSpec([None] * (code.shape.rank - 1) + [code.shape[-1]], tf.float32, name="code")
        functions["serving_default"] = tf.function(
            lambda waveform: {"embedding": self.encode(log_magnitude_of(waveform, signal))},
            input_signature=[waveform_spec()])
        functions["encode"] = tf.function(lambda log_magnitude: {"code": self.encode(log_magnitude)},
                                          input_signature=[log_magnitude_spec(self.bins)])
        functions["decode"] = tf.function(lambda code, frames: {"decoded": self.decode(code, frames)},
                                          input_signature=[code_spec, FRAMES_SPEC])
        functions["reconstruct"] = tf.function(
            lambda log_magnitude: {"reconstruction": self.reconstruct(log_magnitude)},
            input_signature=[log_magnitude_spec(self.bins)])
        return functions


def pad_to_multiple(x: tf.Tensor, multiple: int, axes: tuple[int, ...]) -> tf.Tensor:
    """Zero-pads the given axes at the end up to a multiple of `multiple` (so that strided convs invert)."""
    paddings = []
    for axis in range(x.shape.rank):
        if axis in axes:
            size = tf.shape(x)[axis]
            paddings.append([0, (multiple - size % multiple) % multiple])
        else:
            paddings.append([0, 0])
    return tf.pad(x, paddings)


def track_layers(model: keras.Model, **groups) -> None:
    """Gives every layer held in (nested) Python lists an attribute of its own on `model`.

    Keras 3 leaves layers that live only in lists out of TensorFlow's object graph, so tf.train.Checkpoint and
    tf.saved_model.save would silently skip their weights (BatchNorm statistics included).
    """
    for group, blocks in groups.items():
        for i, block in enumerate(blocks):
            for j, layer in enumerate(block if isinstance(block, (list, tuple)) else [block]):
                setattr(model, f"{group}_{i}_{j}", layer)
