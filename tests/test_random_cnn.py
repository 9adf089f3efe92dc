import numpy as np
import tensorflow as tf

from tfstyle import registry


def tiny(**overrides):
    return registry.build_model("random_cnn", **{"n_filters": 16, "kernel_width": 5, **overrides})


def test_features_shape_and_nonnegative(rng):
    x = tf.constant(rng.random((2, 9, 33)), tf.float32)
    features = tiny().features(x)
    assert list(features) == ["conv"]
    assert features["conv"].shape == (2, 9, 16)
    assert float(tf.reduce_min(features["conv"])) >= 0.0  # ReLU


def test_matmul_form_equals_a_same_padded_convolution(rng):
    model = tiny()
    x = tf.constant(rng.random((1, 12, 33)), tf.float32)
    ours = model(x)
    kernel = tf.reshape(model.kernel, [5, 33, 16])  # rows are (frame offset, bin)
    reference = tf.nn.relu(tf.nn.conv1d(x, kernel, stride=1, padding="SAME"))
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_seed_fixes_the_filters(rng):
    x = tf.constant(rng.random((1, 6, 33)), tf.float32)
    np.testing.assert_array_equal(tiny(seed=1)(x), tiny(seed=1)(x))
    assert not np.allclose(tiny(seed=1)(x), tiny(seed=2)(x))


def test_filters_are_not_trainable_but_input_gradients_flow(rng):
    model = tiny()
    x = tf.Variable(rng.random((1, 6, 33)), dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model.features(x)["conv"])
    assert model.trainable_weights == []
    assert float(tf.reduce_max(tf.abs(tape.gradient(loss, x)))) > 0


def test_get_config_round_trip():
    model = tiny(seed=7)
    rebuilt = type(model).from_config(model.get_config())
    assert (rebuilt.n_filters, rebuilt.kernel_width, rebuilt.seed) == (16, 5, 7)
