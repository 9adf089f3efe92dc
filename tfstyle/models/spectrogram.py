"""`spectrogram`: no network at all; the log-magnitude spectrogram is the one feature layer.

The reference every learnt or random feature has to beat: its Gram matrix is the clip's covariance of log-magnitude
bins over time, so a transfer through it matches the style clip's spectral statistics directly, and
`tfstyle.evaluate` through it identifies voices by them. The README's quality table runs the default transfer
with it in place of the zoo's features (the ablation issue 10 asks for).
"""

import tensorflow as tf

from tfstyle import configs, registry
from tfstyle.models.base import ZooModel, log_magnitude_of, waveform_spec


@registry.register_model("spectrogram", configs.SpectrogramConfig, trainable=False, any_sample_rate=True)
class Spectrogram(ZooModel):
    """The identity on log-magnitude spectrograms [batch, frames, bins]; feature layer "log_magnitude"."""

    feature_layer_names = ("log_magnitude",)
    EXPORTS_WEIGHTS = False  # it has none

    def call(self, log_magnitude):
        return tf.convert_to_tensor(log_magnitude, tf.float32)

    def features(self, log_magnitude):
        """{"log_magnitude": the input itself, [batch, frames, bins]}."""
        return {"log_magnitude": self(log_magnitude)}

    def serving_functions(self, signal: dict) -> dict:
        functions = super().serving_functions(signal)
        functions["serving_default"] = tf.function(
            lambda waveform: {"embedding": tf.reduce_mean(log_magnitude_of(waveform, signal), axis=1)},
            input_signature=[waveform_spec()])
        return functions
