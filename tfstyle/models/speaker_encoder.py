"""`speaker_encoder`: a style representation trained to tell voices apart, from one second of speech.

A learnt per-frame projection of the STFT bins feeds three 1-D convolutions over time (kernel 5, then 3 with
dilation 2 and 3; each conv -> ReLU -> BatchNorm). The utterance embedding is a dense map of the last layer's mean
and spread over time. Trained as a classifier over many speakers (synthetic and real voices; see
training/speaker_encoder.flags), so the Gram matrices of its layers separate voices that it never heard: they are
its style features, and transfer matches them as such.
"""

import keras
import tensorflow as tf

from tfstyle import configs, registry
from tfstyle.models.base import FixedSignalModel, log_magnitude_of, track_layers, waveform_spec

_KERNELS_AND_DILATIONS = ((5, 1), (3, 2), (3, 3))


@registry.register_model("speaker_encoder", configs.SpeakerEncoderConfig)
class SpeakerEncoder(FixedSignalModel):
    """Speaker classifier over spectrogram frames; the arguments are `tfstyle.configs.SpeakerEncoderConfig`'s."""

    feature_layer_names = tuple(f"conv{i + 1}" for i in range(len(_KERNELS_AND_DILATIONS)))
    FEATURE_ROLE = "style"

    def __init__(self, *, sample_rate, frame_length, frame_step, projection, channels, embedding_dim, num_speakers,
                 **kwargs):
        super().__init__(sample_rate=sample_rate, frame_length=frame_length, frame_step=frame_step, **kwargs)
        self.projection_width, self.channels = projection, channels
        self.embedding_dim, self.num_speakers = embedding_dim, num_speakers
        self.projection = keras.layers.Dense(projection, name="projection")
        self.blocks = [[keras.layers.Conv1D(channels, kernel, dilation_rate=dilation, padding="same", name=name),
                        keras.layers.BatchNormalization(name=f"{name}_bn")]
                       for name, (kernel, dilation) in zip(self.feature_layer_names, _KERNELS_AND_DILATIONS)]
        track_layers(self, blocks=self.blocks)  # else checkpoints and SavedModels would skip their weights
        self.embedding_layer = keras.layers.Dense(embedding_dim, name="embedding")
        self.classifier = keras.layers.Dense(num_speakers, name="classifier")  # training only
        self.classifier(self.embed(tf.zeros([1, 4, self.bins])))  # create every weight up front
        self.built = True

    def features(self, log_magnitude, training=False):
        """{"conv1", "conv2", "conv3"}: activations [batch, frames, channels] of log-magnitudes
        [batch, frames, bins]."""
        x = self.projection(log_magnitude)
        result = {}
        for (conv, norm), name in zip(self.blocks, self.feature_layer_names):
            x = norm(tf.nn.relu(conv(x)), training=training)
            result[name] = x
        return result

    def embed(self, log_magnitude, training=False):
        """[batch, embedding_dim]: the last layer's time mean and standard deviation, mapped densely."""
        last = self.features(log_magnitude, training=training)[self.feature_layer_names[-1]]
        mean, variance = tf.nn.moments(last, axes=[1])
        # The floor keeps the gradient finite on a frame-constant (silent) clip, where the deviation is 0.
        return self.embedding_layer(tf.concat([mean, tf.sqrt(variance + 1e-5)], axis=-1))

    def call(self, log_magnitude, training=False):
        return self.embed(log_magnitude, training=training)

    def compute_losses(self, batch, training=False):
        logits = self.classifier(self.embed(batch["log_magnitude"], training=training))
        labels = tf.cast(batch["label"], tf.int32)
        tf.debugging.assert_less(labels, self.num_speakers,
                                 message="more speakers in the data than the config's num_speakers")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
        return {"total_loss": loss, "speaker_loss": loss, "speaker_accuracy": accuracy}

    def summary_spectrograms(self, batch):
        return {"input": batch["log_magnitude"]}

    def serving_functions(self, signal: dict) -> dict:
        functions = super().serving_functions(signal)
        functions["serving_default"] = tf.function(
            lambda waveform: {"embedding": self.embed(log_magnitude_of(waveform, signal))},
            input_signature=[waveform_spec()])
        return functions

    def get_config(self):
        return {**super().get_config(), "projection": self.projection_width, "channels": self.channels,
                "embedding_dim": self.embedding_dim, "num_speakers": self.num_speakers}
