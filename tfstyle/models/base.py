"""What every trainable zoo model shares: the signal it works on, and the training interface train_lib calls."""

import keras
import tensorflow as tf


class SpectrogramAutoencoder(keras.Model):
    """Base of the autoencoders over log-magnitude spectrograms [batch, frames, bins].

    Subclasses define `encode`, `decode`, `features` and `feature_layer_names`; this class gives them the L2
    reconstruction loss, `reconstruct`, and the signal settings (sample rate, STFT) they were trained with.
    """

    EVALUATIONS = ("identification", "reconstruction")  # what tfstyle.evaluate measures

    def __init__(self, sample_rate: int, frame_length: int, frame_step: int, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.bins = frame_length // 2 + 1

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

    def signal_config(self) -> dict:
        return {"sample_rate": self.sample_rate, "frame_length": self.frame_length, "frame_step": self.frame_step}

    def get_config(self):
        return {**super().get_config(), **self.signal_config()}


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
