import numpy as np
import pytest
import tensorflow as tf

from tfstyle import losses


def numpy_gram(features, over):
    batch, frames = features.shape[:2]
    if features.ndim == 4 and over == "time":
        matrix = features.reshape(batch, frames, -1)
    else:
        matrix = features.reshape(batch, -1, features.shape[-1])
    return np.einsum("bpi,bpj->bij", matrix, matrix) / matrix.shape[1]


@pytest.mark.parametrize("shape", [(2, 7, 5), (2, 7, 3, 4)])
@pytest.mark.parametrize("over", losses.GRAM_OVER)
def test_gram_matrix_matches_numpy(shape, over, rng):
    features = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(losses.gram_matrix(features, over=over), numpy_gram(features, over), rtol=1e-5)


def test_gram_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="over"):
        losses.gram_matrix(tf.ones([1, 2, 3]), over="frequency")
    with pytest.raises(ValueError, match="rank"):
        losses.gram_matrix(tf.ones([2, 3]))


@pytest.mark.parametrize("frames, style_frames, channels", [(6, 9, 64), (40, 50, 16)])
def test_style_loss_forms_agree(frames, style_frames, channels, rng):
    """The positions-only form (few frames, many channels) equals the explicit Gram form."""
    x = rng.standard_normal((1, frames, channels)).astype(np.float32)
    s = rng.standard_normal((1, style_frames, channels)).astype(np.float32)
    expected = np.sum((numpy_gram(x, "time") - numpy_gram(s, "time")) ** 2) / np.sum(numpy_gram(s, "time") ** 2)
    for known_frames, explicit in ((None, False), (frames, False), (frames, True)):  # None: the Gram is needed
        target = losses.StyleTarget(s, frames=known_frames, explicit=explicit)
        kernel_form = known_frames is not None and not explicit and frames + style_frames < channels
        assert (target.gram is None) == kernel_form
        assert float(losses.style_loss(x, target)) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("batch, frames, explicit", [(1, 7, False), (2, 7, False), (1, 7, True), (2, None, False)])
def test_style_loss_gradient_is_that_of_its_definition(batch, frames, explicit, rng):
    """The hand-written gradients of both forms equal autodiff through the Gram matrices themselves."""
    x = tf.constant(rng.random((batch, 7, 48)), tf.float32)
    s = tf.constant(rng.random((1, 9, 48)), tf.float32)
    target = losses.StyleTarget(s, frames=frames, explicit=explicit)
    assert (target.gram is None) == (frames is not None and not explicit)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = losses.style_loss(x, target)
        gram_s = losses.gram_matrix(s)
        definition = tf.reduce_sum(tf.square(losses.gram_matrix(x) - gram_s)) / tf.reduce_sum(tf.square(gram_s))
    assert float(ours) == pytest.approx(float(definition), rel=1e-4)
    np.testing.assert_allclose(tape.gradient(ours, x), tape.gradient(definition, x), rtol=1e-3, atol=1e-6)


def test_bfloat16_matmuls_stay_close_to_float32(rng):
    # The loss is normalised by ||G(S)||^2. The positions form (frames given) subtracts three terms of about that
    # size, each a squared norm of bfloat16-rounded products (relative error <= 2^-8 each), so its error is at
    # most ~3 * 2^-8 of the normaliser on any CPU, however close the two Grams are; the C x C form keeps the
    # loss's own relative precision. Clips as alike as these (both uniform noise) are the hard case.
    x = tf.constant(rng.random((1, 30, 256)), tf.float32)
    alike, unlike = rng.random((1, 40, 256)), rng.random((1, 40, 256)) ** 2
    for style in (alike, unlike):
        s = tf.constant(style, tf.float32)
        for frames in (None, 30):
            exact = float(losses.style_loss(x, losses.StyleTarget(s, frames=frames)))
            fast = losses.style_loss(x, losses.StyleTarget(s, frames=frames, matmul_dtype=tf.bfloat16))
            assert fast.dtype == tf.float32
            if frames is None or style is unlike:
                assert float(fast) == pytest.approx(exact, rel=0.05)
            else:  # three terms of about 1 (in units of the normaliser), each within 2^-8
                assert abs(float(fast) - exact) <= 3 * 2**-8


@pytest.mark.parametrize("frames, window, count, length", [(20, 0, 1, 20), (20, 20, 1, 20), (20, 8, 3, 7),
                                                          (21, 7, 3, 7)])
def test_long_clips_are_matched_window_by_window(frames, window, count, length, rng):
    """The loss is the mean of each window's loss against the whole style clip's Gram; one window = no windows."""
    x = tf.constant(rng.random((1, frames, 64)), tf.float32)
    s = tf.constant(rng.random((1, 9, 64)), tf.float32)
    for explicit in (False, True):
        target = losses.StyleTarget(s, frames=frames, window=window, explicit=explicit)
        assert (target.window_count, target.window_frames) == (count, length)
        starts = np.round(np.linspace(0, frames - length, count)).astype(int)
        assert starts[0] == 0 and starts[-1] + length == frames  # every frame is in some window
        each = [float(losses.style_loss(x[:, start:start + length], losses.StyleTarget(s))) for start in starts]
        assert float(losses.style_loss(x, target)) == pytest.approx(np.mean(each), rel=1e-4)


def test_losses_vanish_at_their_targets(rng):
    x = tf.constant(rng.random((1, 10, 32)), tf.float32)
    assert float(losses.style_loss(x, losses.StyleTarget(x, frames=10))) == pytest.approx(0.0, abs=1e-5)
    assert float(losses.style_loss(x, losses.StyleTarget(x))) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.content_loss(x, x)) == 0.0


def test_style_loss_is_relative_so_layers_share_a_scale(rng):
    x = rng.random((1, 10, 32)).astype(np.float32)
    s = rng.random((1, 12, 32)).astype(np.float32)
    loss = float(losses.style_loss(x, losses.StyleTarget(s)))
    scaled = float(losses.style_loss(100 * x, losses.StyleTarget(100 * s)))
    assert scaled == pytest.approx(loss, rel=1e-4)


LOSSES = {
    "style_kernel_form": lambda x, t: losses.style_loss(tf.nn.relu(x), losses.StyleTarget(t, frames=x.shape[1])),
    "style_gram_form": lambda x, t: losses.style_loss(tf.nn.relu(x), losses.StyleTarget(t)),
    "content": lambda x, t: losses.content_loss(x, t),
    "total_variation": lambda x, t: losses.total_variation(x),
    "l2_magnitude": lambda x, t: losses.l2_magnitude(x),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_has_a_nonzero_gradient(name, rng):
    x = tf.Variable(rng.random((1, 8, 16)), dtype=tf.float32)
    target = tf.constant(rng.random((1, 8, 16)) * 2, tf.float32)
    with tf.GradientTape() as tape:
        loss = LOSSES[name](x, target)
    gradient = tape.gradient(loss, x)
    assert loss.shape == ()
    assert float(loss) > 0
    assert np.all(np.isfinite(gradient)) and float(tf.reduce_max(tf.abs(gradient))) > 0


def test_positions_only_form_keeps_a_tiny_loss(rng):
    """Near the style the positions-only form is a small difference of large terms: it must still be exact.

    An optimiser's last iterations live there; a loss lost to rounding stalls L-BFGS's line search. The loss here
    is 1e-7 of the normaliser: summed in float32 it would be off by about 100 %; what remains is the float32
    matmuls' own rounding, which differs between TensorFlow's CPU kernels (2 % with oneDNN, 4 % with Eigen).
    """
    style = np.maximum(rng.standard_normal((1, 150, 2048)), 0).astype(np.float32)
    x = (style * (1 + 1e-3 * rng.standard_normal(style.shape))).astype(np.float32)
    gram = lambda a: np.einsum("bpi,bpj->bij", a.astype(np.float64), a.astype(np.float64)) / a.shape[1]
    expected = np.sum((gram(x) - gram(style)) ** 2) / np.sum(gram(style) ** 2)
    target = losses.StyleTarget(style, frames=150)
    assert target.gram is None  # the positions-only form is the one under test
    np.testing.assert_allclose(losses.style_loss(x, target), expected, rtol=0.1)
