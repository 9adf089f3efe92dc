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
    for positions, explicit in ((None, False), (frames, False), (frames, True)):  # None: the Gram is needed
        target = losses.StyleTarget(s, positions=positions, explicit=explicit)
        kernel_form = positions is not None and not explicit and frames + style_frames < channels
        assert (target.gram is None) == kernel_form
        assert float(losses.style_loss(x, target)) == pytest.approx(expected, rel=1e-4)


def test_losses_vanish_at_their_targets(rng):
    x = tf.constant(rng.random((1, 10, 32)), tf.float32)
    assert float(losses.style_loss(x, losses.StyleTarget(x, positions=10))) == pytest.approx(0.0, abs=1e-5)
    assert float(losses.style_loss(x, losses.StyleTarget(x))) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.content_loss(x, x)) == 0.0


def test_style_loss_is_relative_so_layers_share_a_scale(rng):
    x = rng.random((1, 10, 32)).astype(np.float32)
    s = rng.random((1, 12, 32)).astype(np.float32)
    loss = float(losses.style_loss(x, losses.StyleTarget(s)))
    scaled = float(losses.style_loss(100 * x, losses.StyleTarget(100 * s)))
    assert scaled == pytest.approx(loss, rel=1e-4)


LOSSES = {
    "style_kernel_form": lambda x, t: losses.style_loss(tf.nn.relu(x), losses.StyleTarget(t, positions=x.shape[1])),
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
