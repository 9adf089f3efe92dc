"""`style_encoder`: a linear encoder/decoder over clip-level style features, trained to reconstruct them.

The features are MFCC statistics, spectral centroid and bandwidth, zero-crossing rate, RMS and tempo (see
tfstyle.spectral_ops.style_features); the embedding is the style half of `conv_vae`.

The features are standardised before the encoder (and the decoder's output scaled back) with each feature's mean
and spread over the training clips, tracked as moving averages while it trains: in raw units the loss is ruled by
the few features with the largest spread (tempo, loudness), and the rest are barely reconstructed. `conv_vae`
builds its copy without them (`standardise=False`): it trains that copy through its own loss, in raw units.
"""

import keras
import tensorflow as tf

from tfstyle import configs, registry, spectral_ops
from tfstyle.models.base import FixedSignalModel, waveform_spec


@registry.register_model(
    "style_encoder", configs.StyleEncoderConfig, transfer="none",
    no_transfer_reason="style_encoder maps a whole clip to one 16-number vector, with no time axis for a transfer "
                       "to match; it is the style half of conv_vae: use --model=conv_vae")
class StyleEncoder(FixedSignalModel):
    """Linear map of style features to an embedding and back; arguments as `tfstyle.configs.StyleEncoderConfig`."""

    feature_layer_names = ("embedding",)
    EVALUATIONS = ("style",)  # a clip-level vector has no Gram to identify by

    def __init__(self, *, sample_rate, frame_length, frame_step, embedding_dim, standardise=True, **kwargs):
        super().__init__(sample_rate=sample_rate, frame_length=frame_length, frame_step=frame_step,
                         **kwargs)
        self.embedding_dim = embedding_dim
        self.n_features = len(spectral_ops.STYLE_FEATURE_NAMES)
        self.standardise = standardise
        if standardise:
            self.feature_mean = self.add_weight(shape=(self.n_features,), initializer="zeros", trainable=False,
                                                name="feature_mean")
            self.feature_scale = self.add_weight(shape=(self.n_features,), initializer="ones", trainable=False,
                                                 name="feature_scale")
        self.encoder = keras.layers.Dense(embedding_dim, name="style_embedding")
        self.decoder = keras.layers.Dense(self.n_features, name="style_reconstruction")
        self.decode(self.encode(tf.zeros([1, self.n_features])))  # create every weight up front
        self.built = True

    def style_features(self, waveform):
        """[batch, n_features] style descriptors of waveforms [batch, samples] at this model's rate."""
        return spectral_ops.style_features(waveform, sample_rate=self.sample_rate, frame_length=self.frame_length,
                                           frame_step=self.frame_step)

    def encode(self, style_features):
        if self.standardise:
            style_features = (style_features - self.feature_mean) / self.feature_scale
        return self.encoder(style_features)

    def decode(self, embedding):
        decoded = self.decoder(embedding)
        return decoded * self.feature_scale + self.feature_mean if self.standardise else decoded

    def call(self, style_features, training=False):
        return self.decode(self.encode(style_features))

    def features(self, log_magnitude, training=False):
        # Clip-level features have no time axis to take a Gram over; the transfer loop uses them as content.
        del training
        waveform = spectral_ops.griffin_lim(spectral_ops.magnitude_from_log(log_magnitude), n_iter=8,
                                            frame_length=self.frame_length, frame_step=self.frame_step)
        return {"embedding": self.encode(self.style_features(waveform))[:, tf.newaxis, :]}

    def compute_losses(self, batch, training=False):
        target = self.style_features(batch["waveform"])
        error = self(target, training=training) - target
        if self.standardise:
            if training:
                self._track_feature_statistics(target)
            error /= self.feature_scale  # in standardised units, so that every feature counts alike
        loss = tf.reduce_mean(tf.square(error))
        return {"total_loss": loss, "style_reconstruction_loss": loss}

    def _track_feature_statistics(self, features, momentum: float = 0.99):
        mean, variance = tf.nn.moments(features, axes=[0])
        first = tf.reduce_all(tf.equal(self.feature_scale, 1.0)) & tf.reduce_all(tf.equal(self.feature_mean, 0.0))
        keep = tf.where(first, 0.0, momentum)  # the first batch sets them outright
        self.feature_mean.assign(keep * self.feature_mean + (1.0 - keep) * mean)
        self.feature_scale.assign(keep * self.feature_scale + (1.0 - keep) * tf.sqrt(variance + 1e-6))

    def summary_spectrograms(self, batch):
        return {"input": batch["log_magnitude"]}

    def serving_functions(self, signal: dict) -> dict:
        functions = super().serving_functions(signal)
        style_spec = tf.TensorSpec([None, self.n_features], tf.float32, name="style_features")
        embedding_spec = tf.TensorSpec([None, self.embedding_dim], tf.float32, name="embedding")
        functions["serving_default"] = tf.function(
            lambda waveform: {"embedding": self.encode(self.style_features(waveform))},
            input_signature=[waveform_spec()])
        functions["encode"] = tf.function(lambda style_features: {"code": self.encode(style_features)},
                                          input_signature=[style_spec])
        functions["decode"] = tf.function(lambda embedding: {"decoded": self.decode(embedding)},
                                          input_signature=[embedding_spec])
        functions["reconstruct"] = tf.function(lambda style_features: {"reconstruction": self(style_features)},
                                               input_signature=[style_spec])
        return functions

    def get_config(self):
        return {**super().get_config(), "embedding_dim": self.embedding_dim}
