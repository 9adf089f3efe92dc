"""`random_cnn`: the untrained wide-shallow CNN of Ulyanov & Lebedev (2016).

One 1-D convolution over time with the STFT bins as input channels and thousands of random filters, then ReLU.
Content is the activations, style their Gram matrix. Nothing is trained: the random filters are a rich enough
texture basis, and the fixed seed makes the features identical on every machine.
"""

import tensorflow as tf

from tfstyle import configs, registry
from tfstyle.models.base import ZooModel, log_magnitude_of, log_magnitude_spec, waveform_spec


def random_kernel(shape, seed: int) -> tf.Tensor:
    """The random filters, [kernel_width * bins, n_filters], rows ordered (frame offset, bin).

    Drawn with TensorFlow's stateless Philox generator, so the same seed gives the same filters on every machine and
    inside a SavedModel, which regenerates them from the seed instead of storing 4096 x 11 x 1025 floats. He scaling
    keeps activations of the same order for any bin count; the losses are normalised per layer, so the overall
    scale does not change a transfer.
    """
    fan_in = shape[0]
    return tf.random.stateless_normal(shape, seed=[seed, 0]) * (2.0 / fan_in) ** 0.5


def activations(log_magnitude: tf.Tensor, kernel: tf.Tensor, kernel_width: int) -> tf.Tensor:
    """ReLU of the "same"-padded 1-D convolution over time of [batch, frames, bins] with a `random_kernel`.

    The matmul runs in the kernel's dtype (bfloat16 runs about twice as fast as float32 on CPUs with AVX512-BF16
    or AMX); the activations come back as float32 either way.
    """
    # The convolution as the one matmul it is: each output frame sees kernel_width input frames side by side.
    # One [frames, width * bins] x [width * bins, filters] product runs ~1.4x faster than tf.nn.conv1d here.
    before = (kernel_width - 1) // 2
    padded = tf.pad(log_magnitude, [[0, 0], [before, kernel_width - 1 - before], [0, 0]])
    windows = tf.signal.frame(padded, kernel_width, 1, axis=1)  # [batch, frames, width, bins]
    shape = tf.shape(windows)
    windows = tf.reshape(windows, [shape[0], shape[1], kernel_width * shape[3]])
    return tf.cast(tf.nn.relu(tf.matmul(tf.cast(windows, kernel.dtype), kernel)), tf.float32)


@registry.register_model("random_cnn", configs.RandomCNNConfig, trainable=False, any_sample_rate=True)
class RandomCNN(ZooModel):
    """Random 1-D convolution over time, frequency bins as channels.

    Args:
        n_filters: random filters (output channels).
        kernel_width: filter width in frames.
        seed: seed of the filter weights.

    Input: log-magnitude spectrograms, shape [batch, frames, bins]. Output of `call` and the only feature layer
    "conv": ReLU activations, shape [batch, frames, n_filters] (zero "same" padding keeps every frame). No bias, as
    in the original.
    """

    feature_layer_names = ("conv",)
    EXPORTS_WEIGHTS = False  # its SavedModel regenerates the filters from the seed

    def __init__(self, *, n_filters: int, kernel_width: int, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.n_filters = n_filters
        self.kernel_width = kernel_width
        self.seed = seed
        self._bfloat16_kernel = None

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="conv_kernel",
            shape=(self.kernel_width * input_shape[-1], self.n_filters),
            initializer=lambda shape, dtype=None: random_kernel(shape, self.seed),
            trainable=False,
        )

    def call(self, log_magnitude):
        kernel = self._bfloat16_kernel if self._bfloat16_kernel is not None else self.kernel
        return activations(log_magnitude, kernel, self.kernel_width)

    @property
    def uses_bfloat16_matmuls(self) -> bool:
        return self._bfloat16_kernel is not None

    def use_bfloat16_matmuls(self, enabled: bool = True) -> None:
        """Runs the convolution's matmul in bfloat16 (a copy of the filters is kept in that precision).

        Enabling it again keeps the copy it has: functions traced with it captured that tensor, and a new one for
        each (a long clip's chunks) would add the filters' size to memory every time.
        """
        if not enabled:
            self._bfloat16_kernel = None
        elif self._bfloat16_kernel is None:
            self._bfloat16_kernel = tf.cast(tf.convert_to_tensor(self.kernel), tf.bfloat16)

    def features(self, log_magnitude):
        """{"conv": activations [batch, frames, n_filters]} of log-magnitudes [batch, frames, bins]."""
        return {"conv": self(log_magnitude)}

    def serving_functions(self, signal: dict) -> dict:
        """features and serving_default ({"embedding": time-mean activations}) for the bins of `signal`'s STFT;
        the filters are drawn from the seed inside the graph, so the SavedModel stores no weights."""
        bins = signal["frame_length"] // 2 + 1

        def features(log_magnitude):
            kernel = random_kernel((self.kernel_width * bins, self.n_filters), self.seed)
            return {"conv": activations(log_magnitude, kernel, self.kernel_width)}

        return {
            "features": tf.function(features, input_signature=[log_magnitude_spec(bins)]),
            "serving_default": tf.function(
                lambda waveform: {"embedding": tf.reduce_mean(features(log_magnitude_of(waveform, signal))["conv"],
                                                              axis=1)},
                input_signature=[waveform_spec()]),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "n_filters": self.n_filters,
            "kernel_width": self.kernel_width,
            "seed": self.seed,
        }
