"""`seq2seq_lstm_ae`: a recurrent autoencoder over spectrogram frames (Dai & Le 2015).

A per-frame dense projection feeds an LSTM encoder whose final state is the clip's fixed-length vector; an LSTM
decoder unrolls that vector over the frames and a dense layer maps each step back to the bins. Feature layers for
style transfer are the time-varying ones: "projection" [batch, frames, projection_units] and "encoder"
[batch, frames, lstm_units].
"""

import keras
import tensorflow as tf

from tfstyle import configs, registry
from tfstyle.models.base import SpectrogramAutoencoder


@registry.register_model("seq2seq_lstm_ae", configs.Seq2SeqLSTMAEConfig)
class Seq2SeqLSTMAE(SpectrogramAutoencoder):
    """LSTM autoencoder; the arguments are the fields of `tfstyle.configs.Seq2SeqLSTMAEConfig`."""

    feature_layer_names = ("projection", "encoder")

    def __init__(self, *, sample_rate, frame_length, frame_step, projection_units, lstm_units, **kwargs):
        super().__init__(sample_rate=sample_rate, frame_length=frame_length, frame_step=frame_step,
                         **kwargs)
        self.projection_units = projection_units
        self.lstm_units = lstm_units
        self.projection = keras.layers.Dense(projection_units, activation="relu", name="projection")
        self.encoder = keras.layers.LSTM(lstm_units, return_sequences=True, return_state=True, name="encoder")
        self.decoder = keras.layers.LSTM(lstm_units, return_sequences=True, name="decoder")
        self.output_layer = keras.layers.Dense(self.bins, name="output")
        self.reconstruct(tf.zeros([1, 2, self.bins]))  # create every weight up front
        self.built = True

    def features(self, log_magnitude, training=False):
        """{"projection", "encoder"}: per-frame activations of log-magnitudes [batch, frames, bins]."""
        projected = self.projection(log_magnitude)
        sequence, _, _ = self.encoder(projected, training=training)
        return {"projection": projected, "encoder": sequence}

    def encode(self, log_magnitude, training=False):
        """The fixed-length vector: the encoder's final hidden state, [batch, lstm_units]."""
        _, hidden, _ = self.encoder(self.projection(log_magnitude), training=training)
        return hidden

    def decode(self, code, frames, training=False):
        """Log-magnitudes [batch, frames, bins] unrolled from vectors [batch, lstm_units]."""
        repeated = tf.repeat(code[:, tf.newaxis, :], frames, axis=1)
        return self.output_layer(self.decoder(repeated, training=training))

    def get_config(self):
        return {**super().get_config(), "projection_units": self.projection_units, "lstm_units": self.lstm_units}
