"""`conv_ae`: a symmetric 4-layer 2-D convolutional autoencoder over log spectrograms.

Each encoder layer is conv -> activation -> BatchNorm, as in the VCTK speech style-transfer report; the decoder
mirrors it with transposed convolutions and ends in a linear 1-channel conv (`dilated_conv_ae` dilates the first
layer). Style and content features are the encoder
layers' outputs, "conv1" ... "conv4", each [batch, frames', bins', channels].
"""

import keras
import tensorflow as tf

from tfstyle import configs, registry
from tfstyle.models.base import SpectrogramAutoencoder, pad_to_multiple, track_layers


class _StrideOneTransposedConv(keras.layers.Conv2DTranspose):
    """A stride-1 transposed convolution computed as the plain convolution it equals (the kernel flipped in space,
    its channel axes swapped), with the same weights.

    TensorFlow's CPU kernel for a dilated transposed convolution (Conv2DBackpropInput) exists only in its oneDNN
    build path, which TF 2.17 turns on by itself on AVX-512 CPUs alone: elsewhere, and in a TF Serving binary
    without oneDNN, the dilated decoder fails with "Current CPU implementations do not yet support dilation rates
    larger than 1". A dilated Conv2D runs on every CPU, and so does its gradient.
    """

    def call(self, inputs):
        kernel = tf.transpose(tf.reverse(self.kernel, [0, 1]), [0, 1, 3, 2])
        # "same" for the transposed convolution is the mirror of "same" for the plain one: an odd pad total puts
        # the extra row before, not after.
        totals = [(size - 1) * dilation for size, dilation in zip(self.kernel_size, self.dilation_rate)]
        inputs = tf.pad(inputs, [[0, 0], *[[total - total // 2, total // 2] for total in totals], [0, 0]])
        outputs = tf.nn.convolution(inputs, kernel, strides=1, padding="VALID", dilations=self.dilation_rate)
        return outputs + self.bias if self.use_bias else outputs


def _activation(name: str):
    return keras.layers.LeakyReLU(negative_slope=0.2) if name == "leaky_relu" else keras.layers.ReLU()


@registry.register_model("conv_ae", configs.ConvAEConfig)
class ConvAE(SpectrogramAutoencoder):
    """Convolutional autoencoder; the arguments are the fields of `tfstyle.configs.ConvAEConfig`."""

    def __init__(self, *, sample_rate, frame_length, frame_step, filters, kernel_size, first_layer_dilation,
                 batch_norm, activation, **kwargs):
        super().__init__(sample_rate=sample_rate, frame_length=frame_length, frame_step=frame_step,
                         **kwargs)
        self.filters = tuple(filters)
        self.kernel_size = kernel_size
        self.first_layer_dilation = first_layer_dilation
        self.batch_norm = batch_norm
        self.activation = activation
        # A dilated first layer keeps stride 1 (Keras cannot stride and dilate at once).
        self.strides = tuple(1 if i == 0 and first_layer_dilation > 1 else 2 for i in range(len(self.filters)))
        self.total_stride = 1
        for stride in self.strides:
            self.total_stride *= stride
        self.feature_layer_names = tuple(f"conv{i + 1}" for i in range(len(self.filters)))

        self.encoder_blocks = []
        for i, (width, stride) in enumerate(zip(self.filters, self.strides)):
            dilation = first_layer_dilation if i == 0 else 1
            self.encoder_blocks.append(self._block(
                keras.layers.Conv2D(width, kernel_size, strides=stride, dilation_rate=dilation, padding="same",
                                    name=f"conv{i + 1}"), f"conv{i + 1}"))
        self.decoder_blocks = []
        for i in reversed(range(1, len(self.filters))):
            self.decoder_blocks.append(self._block(
                keras.layers.Conv2DTranspose(self.filters[i - 1], kernel_size, strides=self.strides[i],
                                             padding="same", name=f"deconv{i + 1}"), f"deconv{i + 1}"))
        output_class = _StrideOneTransposedConv if first_layer_dilation > 1 else keras.layers.Conv2DTranspose
        self.output_layer = output_class(1, kernel_size, strides=self.strides[0], padding="same",
                                         dilation_rate=first_layer_dilation, name="deconv1")
        track_layers(self, encoder=self.encoder_blocks, decoder=self.decoder_blocks)
        self.reconstruct(tf.zeros([1, self.total_stride, self.bins]))  # create every weight up front
        self.built = True

    def _block(self, conv, name):
        layers = [conv, _activation(self.activation)]
        if self.batch_norm:
            layers.append(keras.layers.BatchNormalization(name=f"{name}_bn"))
        return layers

    def _encoder_outputs(self, log_magnitude, training=False):
        x = pad_to_multiple(log_magnitude, self.total_stride, axes=(1, 2))[..., tf.newaxis]
        outputs = {}
        for name, block in zip(self.feature_layer_names, self.encoder_blocks):
            for layer in block:
                x = layer(x, training=training)
            outputs[name] = x
        return outputs

    def features(self, log_magnitude, training=False):
        """{"conv1" ... "conv4": [batch, frames', bins', channels]} of log-magnitudes [batch, frames, bins]."""
        return self._encoder_outputs(log_magnitude, training=training)

    def encode(self, log_magnitude, training=False):
        """The bottleneck, [batch, frames / total_stride, bins / total_stride, filters[-1]] (padded up)."""
        return self._encoder_outputs(log_magnitude, training=training)[self.feature_layer_names[-1]]

    def decode(self, code, frames, training=False):
        """Log-magnitudes [batch, frames, bins] from a bottleneck; `frames` crops the padding off again."""
        x = code
        for block in self.decoder_blocks:
            for layer in block:
                x = layer(x, training=training)
        x = self.output_layer(x)[..., 0]
        return x[:, :frames, :self.bins]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "first_layer_dilation": self.first_layer_dilation, "batch_norm": self.batch_norm,
                "activation": self.activation}
