"""Losses for style transfer (and, later, training), each a scalar float32 tensor.

Style and content losses are relative errors: ||x - target||^2 / ||target||^2. That puts every feature layer on the
same scale whatever its size or activation level, so style can be taken from several layers without one swamping
the rest or the optimiser running away on a large layer.
"""

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

        ||A^T A||^2 / T^2 - 2 ||A S^T||^2 / (T Ts) + ||S S^T||^2 / Ts^2

    It costs O(C T (T + Ts)) instead of O(C^2 T): for the random CNN (C = 4096 filters, a few hundred frames) about
    5x fewer operations for the Gram part of a step. `style_loss` takes whichever form is cheaper for the shapes.

    Args:
        style_features: the style clip's feature map, [1, frames, channels] or [1, frames, freq, channels].
        over: as for `gram_matrix`.
        positions: positions of the maps the loss will be evaluated on, if known; lets the C x C target Gram be
            skipped when the cheaper form will always be used.
        explicit: always use the C x C Gram form (the original formulation; for reference measurements).
    """

    def __init__(self, style_features: tf.Tensor, *, over: str = "time", positions: int | None = None,
                 explicit: bool = False):
        self.over = over
        self.explicit = explicit  # always the C x C form: the original formulation, kept as a reference
        self.matrix = positions_by_channels(style_features, over)
        style_positions, channels = self.matrix.shape[1], self.matrix.shape[2]
        self.scale = 1.0 / float(style_positions)
        self.gram = None
        if explicit or positions is None or not _kernel_form_is_cheaper(positions, style_positions, channels):
            self.gram = tf.matmul(self.matrix, self.matrix, transpose_a=True) * self.scale
        # ||G(S)||^2 normalises the loss; computed in whichever form is cheaper.
        if _kernel_form_is_cheaper(style_positions, style_positions, channels):
            kernel = tf.matmul(self.matrix, self.matrix, transpose_b=True)
            self.gram_norm_squared = _squared_norm(kernel) * self.scale**2
        else:
            gram = self.gram
            if gram is None:
                gram = tf.matmul(self.matrix, self.matrix, transpose_a=True) * self.scale
            self.gram_norm_squared = _squared_norm(gram)


def _kernel_form_is_cheaper(positions: int, style_positions: int, channels: int) -> bool:
    return positions + style_positions < channels


def _squared_norm(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.square(x))


def relative_squared_error(values: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """||values - target||^2 / ||target||^2 (target norm floored so that an all-zero target cannot divide by 0)."""
    error = tf.reduce_sum(tf.square(values - target))
    return error / tf.maximum(tf.reduce_sum(tf.square(target)), 1e-12)


def content_loss(features: tf.Tensor, target_features: tf.Tensor) -> tf.Tensor:
    """Relative squared error between feature maps of the same shape."""
    return relative_squared_error(features, target_features)


def style_loss(features: tf.Tensor, target: StyleTarget) -> tf.Tensor:
    """||G(features) - G(style)||^2 / ||G(style)||^2, G = `gram_matrix` over `target.over`, summed over the batch."""
    matrix = positions_by_channels(features, target.over)
    positions, channels = matrix.shape[1], matrix.shape[2]
    denominator = tf.maximum(target.gram_norm_squared, 1e-12)
    if target.gram is None or (not target.explicit and positions is not None and
                               _kernel_form_is_cheaper(positions, target.matrix.shape[1], channels)):
        scale = 1.0 / tf.cast(tf.shape(matrix)[1], matrix.dtype)
        own = _squared_norm(tf.matmul(matrix, matrix, transpose_b=True)) * scale**2
        cross = _squared_norm(tf.matmul(matrix, target.matrix, transpose_b=True)) * scale * target.scale
        batch = tf.cast(tf.shape(matrix)[0], matrix.dtype)  # every example is compared with the one style
        return (own - 2.0 * cross + batch * target.gram_norm_squared) / denominator
    return _squared_norm(gram_matrix(features, over=target.over) - target.gram) / denominator


def total_variation(log_magnitude: tf.Tensor) -> tf.Tensor:
    """Mean absolute difference between neighbouring frames and between neighbouring bins of [batch, frames, bins]."""
    over_time = tf.reduce_mean(tf.abs(log_magnitude[:, 1:, :] - log_magnitude[:, :-1, :]))
    over_frequency = tf.reduce_mean(tf.abs(log_magnitude[:, :, 1:] - log_magnitude[:, :, :-1]))
    return over_time + over_frequency


def l2_magnitude(log_magnitude: tf.Tensor) -> tf.Tensor:
    """Mean squared value: pulls the optimised spectrogram towards silence where nothing else asks for energy."""
    return tf.reduce_mean(tf.square(log_magnitude))
