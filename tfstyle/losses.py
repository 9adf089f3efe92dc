"""Losses for style transfer (and, later, training), each a scalar float32 tensor.

Style and content losses are relative errors: ||x - target||^2 / ||target||^2. That puts every feature layer on the
same scale whatever its size or activation level, so style can be taken from several layers without one swamping
the rest or the optimiser running away on a large layer.
"""

import numpy as np
import tensorflow as tf

GRAM_OVER = ("time", "time_frequency")


def positions_by_channels(features: tf.Tensor, over: str) -> tf.Tensor:
    """[batch, positions, channels]: the matrix whose Gram `gram_matrix` takes (before dividing by positions)."""
    if over not in GRAM_OVER:
        raise ValueError(f"over must be one of {GRAM_OVER}, got {over!r}")
    features = tf.convert_to_tensor(features)
    if features.shape.rank == 3:
        return features
    if features.shape.rank != 4:
        raise ValueError(f"features must have rank 3 or 4, got shape {features.shape}")
    batch, frames, freq, channels = tf.unstack(tf.shape(features))
    if over == "time":
        return tf.reshape(features, [batch, frames, freq * channels])
    return tf.reshape(features, [batch, frames * freq, channels])


def gram_matrix(features: tf.Tensor, *, over: str = "time") -> tf.Tensor:
    """Channel co-occurrence statistics of feature maps, averaged over positions.

    Args:
        features: [batch, frames, channels] (1-D models) or [batch, frames, freq, channels] (2-D models).
        over: "time" sums over frames only, treating freq x channels as the channels of a 4-D map;
            "time_frequency" sums over frames and frequency, giving a channels x channels Gram. Both are the same
            for 3-D features.

    Returns:
        [batch, C, C] with C the channel count as above, divided by the number of positions summed over, so that
        clips of different lengths have comparable Grams.
    """
    matrix = positions_by_channels(features, over)
    positions = tf.cast(tf.shape(matrix)[1], matrix.dtype)
    return tf.matmul(matrix, matrix, transpose_a=True) / positions


class StyleTarget:
    """The style of one clip at one feature layer, prepared once for many `style_loss` evaluations.

    The loss ||G(A) - G(S)||^2 between Gram matrices of A [T, C] (the clip being optimised) and S [Ts, C] (the
    style clip) has a second, exact form that never builds a C x C matrix:

        ||A A^T||^2 / T^2 - 2 ||A S^T||^2 / (T Ts) + ||S S^T||^2 / Ts^2

    It costs O(C T (T + Ts)) instead of O(C^2 T): for the random CNN (C = 4096 filters, a few hundred frames) about
    5x fewer operations for the Gram part of a step. `style_loss` takes whichever form is cheaper for the shapes,
    and both carry a hand-written gradient that reuses the forward products (autodiff would differentiate A^T A
    as a product of two different matrices and spend a third matmul).

    Long clips are matched window by window: with `window` set, a clip of more frames is split into equal windows
    of at most that many frames, each matched to the style clip's Gram, and the loss is their mean. A clip that
    fits one window is matched as a whole, as before. Windows keep the cost per frame constant (time linear in
    the clip's length) and ask for the style everywhere in a long clip rather than only on average over it.

    Args:
        style_features: the style clip's feature map, [1, frames, channels] or [1, frames, freq, channels].
        over: as for `gram_matrix`.
        frames: frames of the maps the loss will be evaluated on, if known; needed for `window`, and lets the
            C x C target Gram be skipped when the cheaper form will always be used.
        window: most frames per Gram; 0 = one Gram over the whole clip.
        explicit: always use the C x C Gram form (the original formulation; for reference measurements).
        matmul_dtype: dtype the loss's matmuls run in (bfloat16 is faster on CPUs with AMX or AVX512-BF16);
            the matmuls' results and the returned loss stay float32.
    """

    def __init__(self, style_features: tf.Tensor, *, over: str = "time", frames: int | None = None,
                 window: int = 0, explicit: bool = False, matmul_dtype: tf.DType = tf.float32):
        self.over = over
        self.matrix = tf.cast(positions_by_channels(style_features, over), tf.float32)
        style_positions, channels = self.matrix.shape[1], self.matrix.shape[2]
        self.scale = 1.0 / float(style_positions)
        self.window_count, self.window_frames = 1, frames
        if frames is not None and window:
            self.window_count = -(-frames // window)
            self.window_frames = -(-frames // self.window_count)
        # The target itself is computed once, in float32, whatever matmul_dtype the steps use.
        self.gram = None
        if frames is None or explicit or not _kernel_form_is_cheaper(
                self.window_frames * (style_positions // style_features.shape[1]), style_positions, channels):
            self.gram = self._full_gram()
        # ||G(S)||^2 normalises the loss; computed in whichever form is cheaper, summed in float64 (see below).
        if self.gram is None and _kernel_form_is_cheaper(style_positions, style_positions, channels):
            kernel = tf.matmul(self.matrix, self.matrix, transpose_b=True)
            self.gram_norm_squared = _squared_norm_float64(kernel) * self.scale**2
        else:
            self.gram_norm_squared = _squared_norm_float64(
                self.gram if self.gram is not None else self._full_gram())
        self.use_matmul_dtype(matmul_dtype)

    def _full_gram(self) -> tf.Tensor:
        return tf.matmul(self.matrix, self.matrix, transpose_a=True) * self.scale

    def use_matmul_dtype(self, dtype: tf.DType) -> None:
        """Runs later `style_loss` matmuls in `dtype` (functions already traced keep the dtype they saw)."""
        self.matmul_dtype = dtype
        self.matmul_matrix = tf.cast(self.matrix, dtype)


def split_into_windows(features: tf.Tensor, count: int, frames: int) -> tf.Tensor:
    """[batch, T, ...] -> [batch * count, frames, ...]: `count` windows of `frames` frames, evenly spaced from the
    first frame to the last (neighbours overlap by a few frames when T is not a multiple of `frames`)."""
    if count == 1:
        return features
    total = features.shape[1]
    starts = np.round(np.linspace(0, total - frames, count)).astype(np.int32)
    windows = tf.gather(features, starts[:, np.newaxis] + np.arange(frames, dtype=np.int32), axis=1)
    return tf.reshape(windows, [-1, frames, *features.shape[2:]])


def _kernel_form_is_cheaper(positions: int, style_positions: int, channels: int) -> bool:
    return positions + style_positions < channels


def _squared_norm(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.square(x))


def _squared_norm_float64(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.square(tf.cast(x, tf.float64)))


def _matmul(a: tf.Tensor, b: tf.Tensor, dtype: tf.DType, **kwargs) -> tf.Tensor:
    """a @ b with the inputs in `dtype` and a float32 result."""
    if a.shape.rank == 3 and a.shape[0] == 1 and b.shape.rank == 3 and b.shape[0] == 1:
        # One example (every transfer): a 2-D matmul runs ~15 % faster than the batched kernel here.
        return _matmul(a[0], b[0], dtype, **kwargs)[tf.newaxis]
    return tf.cast(tf.matmul(tf.cast(a, dtype), tf.cast(b, dtype), **kwargs), tf.float32)


def _gram_distance(matrix: tf.Tensor, target: StyleTarget) -> tf.Tensor:
    """||G(matrix) - G(style)||^2 summed over the batch, G = A^T A / positions, in the explicit C x C form."""

    @tf.custom_gradient
    def distance(a):
        positions = tf.cast(tf.shape(a)[1], tf.float32)
        error = _matmul(a, a, target.matmul_dtype, transpose_a=True) / positions - target.gram

        def gradient(upstream):  # d/dA ||A^T A / T - G_s||^2 = 4 A E / T (E is symmetric)
            return upstream * (4.0 / positions) * _matmul(a, error, target.matmul_dtype)

        return _squared_norm(error), gradient

    return distance(matrix)


def _gram_distance_by_positions(matrix: tf.Tensor, target: StyleTarget) -> tf.Tensor:
    """The same distance in the positions-only form (see StyleTarget), never building a C x C matrix."""

    @tf.custom_gradient
    def distance(a):
        dtype = target.matmul_dtype
        scale64 = 1.0 / tf.cast(tf.shape(a)[1], tf.float64)  # 1 / T
        scale = tf.cast(scale64, tf.float32)
        own = _matmul(a, a, dtype, transpose_b=True)  # [batch, T, T]
        cross = _matmul(a, target.matmul_matrix, dtype, transpose_b=True)  # [batch, T, Ts]
        # Three terms of the size of ||G(S)||^2 whose difference is the (small) loss: summed and subtracted in
        # float64. In float32 the sums' rounding swamps a loss below ~1e-3 of ||G(S)||^2, and an L-BFGS line
        # search then stalls (the matmuls' own float32 rounding is far smaller).
        batch = tf.cast(tf.shape(a)[0], tf.float64)  # every example is compared with the one style
        value = tf.cast(_squared_norm_float64(own) * scale64**2
                        - 2.0 * _squared_norm_float64(cross) * scale64 * target.scale
                        + batch * target.gram_norm_squared, tf.float32)

        def gradient(upstream):  # 4 (A A^T) A / T^2 - 4 (A S^T) S / (T Ts)
            return upstream * 4.0 * scale * (_matmul(own * scale, a, dtype)
                                             - _matmul(cross * target.scale, target.matmul_matrix, dtype))

        return value, gradient

    return distance(matrix)


def relative_squared_error(values: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """||values - target||^2 / ||target||^2 (target norm floored so that an all-zero target cannot divide by 0)."""
    error = tf.reduce_sum(tf.square(values - target))
    return error / tf.maximum(tf.reduce_sum(tf.square(target)), 1e-12)


def content_loss(features: tf.Tensor, target_features: tf.Tensor) -> tf.Tensor:
    """Relative squared error between feature maps of the same shape."""
    return relative_squared_error(features, target_features)


def style_loss(features: tf.Tensor, target: StyleTarget) -> tf.Tensor:
    """||G(features) - G(style)||^2 / ||G(style)||^2, G = `gram_matrix` over `target.over`, summed over the batch
    (and averaged over the target's windows, if it has several)."""
    features = split_into_windows(features, target.window_count, target.window_frames)
    matrix = tf.cast(positions_by_channels(features, target.over), tf.float32)
    denominator = tf.maximum(tf.cast(target.gram_norm_squared, tf.float32), 1e-12) * target.window_count
    if target.gram is None:
        return _gram_distance_by_positions(matrix, target) / denominator
    return _gram_distance(matrix, target) / denominator


def total_variation(log_magnitude: tf.Tensor) -> tf.Tensor:
    """Mean absolute difference between neighbouring frames and between neighbouring bins of [batch, frames, bins]."""
    over_time = tf.reduce_mean(tf.abs(log_magnitude[:, 1:, :] - log_magnitude[:, :-1, :]))
    over_frequency = tf.reduce_mean(tf.abs(log_magnitude[:, :, 1:] - log_magnitude[:, :, :-1]))
    return over_time + over_frequency


def l2_magnitude(log_magnitude: tf.Tensor) -> tf.Tensor:
    """Mean squared value: pulls the optimised spectrogram towards silence where nothing else asks for energy."""
    return tf.reduce_mean(tf.square(log_magnitude))
