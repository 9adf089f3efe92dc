"""`conv_vae`: separate content and style pipelines, recombined into a spectrogram.

A convolutional VAE over log-mel spectrograms whose latent map (time x mel, downsampled) carries the
content, plus its own style encoder and a recombination decoder that turns a content latent and a style embedding
into a linear-frequency log-magnitude spectrogram, so that Griffin-Lim can make audio of it:

    content of A + style of B  ->  recombine(waveform_a, waveform_b)  ->  log-magnitude  ->  griffin_lim
"""

import keras
import tensorflow as tf

from tfstyle import configs, registry, spectral_ops
from tfstyle.models.base import (FRAMES_SPEC, FixedSignalModel, log_magnitude_of, log_magnitude_spec,
                                 pad_to_multiple, track_layers, waveform_spec)
from tfstyle.models.style_encoder import StyleEncoder


def _log_mel(log_magnitude, sample_rate, n_mels):
    magnitude = spectral_ops.magnitude_from_log(log_magnitude)
    return tf.math.log1p(spectral_ops.mel_spectrogram(magnitude, sample_rate=sample_rate, n_mels=n_mels))


@registry.register_model("conv_vae", configs.ConvVAEConfig, transfer="recombine")
class ConvVAE(FixedSignalModel):
    """Content VAE + style encoder + recombination decoder; arguments as `tfstyle.configs.ConvVAEConfig`."""

    EVALUATIONS = ("identification", "content")
    FEATURE_ROLE = "content"  # its feature layers are the content VAE's encoder; the style is a separate embedding

    def __init__(self, *, sample_rate, frame_length, frame_step, n_mels, filters, latent_channels, embedding_dim,
                 kl_weight, recombination_weight, **kwargs):
        super().__init__(sample_rate=sample_rate, frame_length=frame_length, frame_step=frame_step,
                         **kwargs)
        self.n_mels = n_mels
        self.filters = tuple(filters)
        self.latent_channels = latent_channels
        self.embedding_dim = embedding_dim
        self.kl_weight = kl_weight
        self.recombination_weight = recombination_weight
        self.total_stride = 2 ** len(self.filters)
        self.feature_layer_names = tuple(f"encoder{i + 1}" for i in range(len(self.filters))) + ("latent_mean",)

        def conv_block(width, name, transpose=False):
            conv = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
            return [conv(width, 3, strides=2, padding="same", name=name), keras.layers.ReLU(),
                    keras.layers.BatchNormalization(name=f"{name}_bn")]

        self.encoder_blocks = [conv_block(w, f"encoder{i + 1}") for i, w in enumerate(self.filters)]
        self.latent_layer = keras.layers.Conv2D(2 * latent_channels, 1, name="latent")
        mirrored = list(reversed(self.filters))
        self.mel_decoder_blocks = [conv_block(w, f"mel_decoder{i + 1}", transpose=True) for i, w in enumerate(mirrored)]
        self.mel_output = keras.layers.Conv2D(1, 3, padding="same", name="mel_output")
        self.style = StyleEncoder(sample_rate=sample_rate, frame_length=frame_length, frame_step=frame_step,
                                  embedding_dim=embedding_dim, standardise=False, name="style_encoder")
        self.recombination_blocks = [conv_block(w, f"recombination{i + 1}", transpose=True)
                                     for i, w in enumerate(mirrored)]
        self.recombination_output = keras.layers.Dense(self.bins, name="recombination_output")
        track_layers(self, encoder=self.encoder_blocks, mel_decoder=self.mel_decoder_blocks,
                     recombination=self.recombination_blocks)
        zeros = tf.zeros([1, self.total_stride, self.bins])
        self.compute_losses({"log_magnitude": zeros, "waveform": tf.zeros([1, frame_length])})
        self.built = True

    @staticmethod
    def _run(blocks, x, training):
        for block in blocks:
            for layer in block:
                x = layer(x, training=training)
        return x

    def log_mel(self, log_magnitude):
        """The VAE's input, log(1 + mel power), [batch, frames, n_mels]."""
        return _log_mel(log_magnitude, self.sample_rate, self.n_mels)

    def _encoder_outputs(self, log_magnitude, training=False):
        x = pad_to_multiple(self.log_mel(log_magnitude), self.total_stride, axes=(1, 2))[..., tf.newaxis]
        outputs = {}
        for i, block in enumerate(self.encoder_blocks):
            x = self._run([block], x, training)
            outputs[f"encoder{i + 1}"] = x
        mean, log_variance = tf.split(self.latent_layer(x), 2, axis=-1)
        outputs["latent_mean"], outputs["latent_log_variance"] = mean, log_variance
        return outputs

    def features(self, log_magnitude, training=False):
        """{"encoder1" ..., "latent_mean"}: [batch, frames', mels', channels] maps of log-magnitudes."""
        outputs = self._encoder_outputs(log_magnitude, training=training)
        return {name: outputs[name] for name in self.feature_layer_names}

    def encode(self, log_magnitude, training=False):
        """(mean, log variance) of the content latent, each [batch, frames', mels', latent_channels]."""
        outputs = self._encoder_outputs(log_magnitude, training=training)
        return outputs["latent_mean"], outputs["latent_log_variance"]

    def decode_mel(self, latent, frames, training=False):
        """The VAE's reconstruction: log-mel [batch, frames, n_mels] from a latent map."""
        x = self.mel_output(self._run(self.mel_decoder_blocks, latent, training))
        return x[:, :frames, :self.n_mels, 0]

    def decode(self, latent, style_embedding, frames, training=False):
        """Recombination: log-magnitude [batch, frames, bins] from a content latent and a style embedding."""
        shape = tf.shape(latent)
        style = tf.broadcast_to(style_embedding[:, tf.newaxis, tf.newaxis, :],
                                [shape[0], shape[1], shape[2], self.embedding_dim])
        x = self._run(self.recombination_blocks, tf.concat([latent, style], axis=-1), training)
        x = x[:, :frames, :self.n_mels, :]
        x = tf.reshape(x, [tf.shape(x)[0], frames, self.n_mels * self.filters[0]])
        return tf.nn.relu(self.recombination_output(x))  # log1p magnitudes are >= 0

    def recombine(self, content_waveform, style_waveform):
        """Content of one clip in the style of another: log-magnitude [batch, content_frames, bins]."""
        log_magnitude = spectral_ops.log_magnitude_spectrogram(
            content_waveform, frame_length=self.frame_length, frame_step=self.frame_step)
        latent, _ = self.encode(log_magnitude)
        embedding = self.style.encode(self.style.style_features(style_waveform))
        return self.decode(latent, embedding, tf.shape(log_magnitude)[1])

    def call(self, log_magnitude, training=False):
        latent, _ = self.encode(log_magnitude, training=training)
        return self.decode_mel(latent, tf.shape(log_magnitude)[1], training=training)

    def compute_losses(self, batch, training=False):
        log_magnitude = batch["log_magnitude"]
        frames = tf.shape(log_magnitude)[1]
        mean, log_variance = self.encode(log_magnitude, training=training)
        if training:
            latent = mean + tf.exp(0.5 * log_variance) * tf.random.normal(tf.shape(mean))
        else:
            latent = mean
        mel_loss = tf.reduce_mean(tf.square(self.decode_mel(latent, frames, training=training)
                                            - self.log_mel(log_magnitude)))
        kl = -0.5 * tf.reduce_mean(tf.reduce_sum(1.0 + log_variance - tf.square(mean) - tf.exp(log_variance), -1))
        style_features = self.style.style_features(batch["waveform"])
        embedding = self.style.encode(style_features)
        style_loss = tf.reduce_mean(tf.square(self.style.decode(embedding) - style_features))
        recombined = self.decode(latent, embedding, frames, training=training)
        recombination_loss = tf.reduce_mean(tf.square(recombined - log_magnitude))
        total = (mel_loss + self.kl_weight * kl + style_loss + self.recombination_weight * recombination_loss)
        return {"total_loss": total, "mel_reconstruction_loss": mel_loss, "kl_loss": kl,
                "style_reconstruction_loss": style_loss, "recombination_loss": recombination_loss}

    def summary_spectrograms(self, batch):
        log_magnitude = batch["log_magnitude"]
        latent, _ = self.encode(log_magnitude)
        embedding = self.style.encode(self.style.style_features(batch["waveform"]))
        return {"input": log_magnitude, "reconstruction": self.decode(latent, embedding, tf.shape(log_magnitude)[1])}

    def serving_functions(self, signal: dict) -> dict:
        functions = super().serving_functions(signal)
        latent_spec = tf.TensorSpec([None, None, None, self.latent_channels], tf.float32, name="latent")
        style_embedding_spec = tf.TensorSpec([None, self.embedding_dim], tf.float32, name="style_embedding")

        def encode(log_magnitude):
            mean, log_variance = self.encode(log_magnitude)
            return {"code": mean, "code_log_variance": log_variance}

        functions["serving_default"] = tf.function(
            lambda waveform: {"embedding": self.encode(log_magnitude_of(waveform, signal))[0]},
            input_signature=[waveform_spec()])
        functions["encode"] = tf.function(encode, input_signature=[log_magnitude_spec(self.bins)])
        functions["decode"] = tf.function(
            lambda latent, style_embedding, frames: {"decoded": self.decode(latent, style_embedding, frames)},
            input_signature=[latent_spec, style_embedding_spec, FRAMES_SPEC])
        functions["reconstruct"] = tf.function(lambda log_magnitude: {"reconstruction": self(log_magnitude)},
                                               input_signature=[log_magnitude_spec(self.bins)])
        functions["recombine"] = tf.function(
            lambda content_waveform, style_waveform: {
                "log_magnitude": self.recombine(content_waveform, style_waveform)},
            input_signature=[waveform_spec("content_waveform"), waveform_spec("style_waveform")])
        return functions

    def get_config(self):
        return {**super().get_config(), "n_mels": self.n_mels, "filters": self.filters,
                "latent_channels": self.latent_channels, "embedding_dim": self.embedding_dim,
                "kl_weight": self.kl_weight, "recombination_weight": self.recombination_weight}
