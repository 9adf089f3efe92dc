"""Every trainable zoo model, parametrised from the registry, with tiny configs."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfstyle import configs, registry, spectral_ops, train_lib
from tfstyle.models import conv_ae
from conftest import SIGNAL, TINY, TINY_RATE as SAMPLE_RATE, chirp, harmonic_tone



def test_every_trainable_model_has_a_tiny_config():
    assert sorted(TINY) == sorted(train_lib.trainable_models())


def build(name):
    return registry.build_model(name, **SIGNAL, **TINY[name])


@pytest.fixture(scope="module")
def batch():
    waveform = tf.constant(np.stack([chirp(0.5, SAMPLE_RATE, f1=2000.0), harmonic_tone(0.5, SAMPLE_RATE)]))
    log_magnitude = spectral_ops.log_magnitude(spectral_ops.stft_magnitude(waveform, frame_length=256, frame_step=64))
    # content_encoder's pair: each clip again, quieter and with a little noise, aligned frame for frame.
    paired = spectral_ops.log_magnitude(spectral_ops.stft_magnitude(
        0.7 * waveform + 0.01 * tf.random.stateless_normal(waveform.shape, [0, 1]), frame_length=256, frame_step=64))
    frames = log_magnitude.shape[1]
    aligned = tf.tile(tf.range(0, frames, 3)[tf.newaxis, :, tf.newaxis], [2, 1, 2])
    return {"waveform": waveform, "log_magnitude": log_magnitude, "label": tf.constant([0, 1]),
            "paired_log_magnitude": paired, "frames": tf.constant([frames, frames]),
            "paired_frames": tf.constant([frames, frames]), "aligned": aligned, "paired_label": tf.constant([2, 3])}


@pytest.mark.parametrize("name", sorted(TINY))
def test_features_are_named_and_differentiable(name, batch):
    model = build(name)
    x = tf.Variable(batch["log_magnitude"])
    with tf.GradientTape() as tape:
        features = model.features(x)
        total = tf.add_n([tf.reduce_sum(tf.square(f)) for f in features.values()])
    assert tuple(features) == tuple(model.feature_layer_names)
    for tensor in features.values():
        assert tensor.shape[0] == 2 and tensor.shape.rank in (3, 4)
    gradient = tape.gradient(total, x)
    assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0


@pytest.mark.parametrize("name", ["conv_ae", "dilated_conv_ae", "seq2seq_lstm_ae"])
def test_autoencoders_reconstruct_the_input_shape(name, batch):
    model = build(name)
    frames = batch["log_magnitude"].shape[1]
    for length in (frames, frames - 3):  # lengths that are not a multiple of the strides are cropped back
        x = batch["log_magnitude"][:, :length]
        assert model.reconstruct(x).shape == x.shape


def test_conv_vae_recombines_content_and_style_into_audio(batch):
    model = build("conv_vae")
    log_magnitude = model.recombine(batch["waveform"][:1], batch["waveform"][1:])
    assert log_magnitude.shape == batch["log_magnitude"][:1].shape
    waveform = spectral_ops.griffin_lim(spectral_ops.magnitude_from_log(log_magnitude), n_iter=4,
                                        frame_length=256, frame_step=64)
    assert waveform.shape == (1, (log_magnitude.shape[1] - 1) * 64) and np.all(np.isfinite(waveform))


@pytest.mark.parametrize("name", sorted(TINY))
def test_config_round_trip(name):
    spec = registry.lookup(name)
    config = spec.config_class(**SIGNAL, **TINY[name])
    assert configs.from_json(spec.config_class, configs.to_json(config)) == config
    model = registry.build_model(name, config)
    rebuilt = type(model).from_config(model.get_config())
    assert rebuilt.get_config() == model.get_config()


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(name, batch):
    tf.keras.utils.set_random_seed(0)
    model = build(name)
    optimizer = tf.keras.optimizers.Adam(3e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            losses = model.compute_losses(batch, training=True)
        gradients = tape.gradient(losses["total_loss"], model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return losses

    before = float(model.compute_losses(batch)["total_loss"])
    for _ in range(15):
        step()
    after = float(model.compute_losses(batch)["total_loss"])
    assert np.isfinite(after) and after < before


def test_conv_ae_options_change_the_layers():
    def layer_types(model):
        return {type(layer).__name__ for block in model.encoder_blocks for layer in block}

    assert layer_types(registry.build_model("conv_ae", **SIGNAL, filters=(4, 4))) == {
        "Conv2D", "ReLU", "BatchNormalization"}
    plain = registry.build_model("conv_ae", **SIGNAL, filters=(4, 4), batch_norm=False, activation="leaky_relu")
    assert layer_types(plain) == {"Conv2D", "LeakyReLU"}
    dilated = registry.build_model("dilated_conv_ae", **SIGNAL, filters=(4, 4))
    assert dilated.encoder_blocks[0][0].dilation_rate == (2, 2) and dilated.strides == (1, 2)
    assert dataclasses.asdict(configs.DilatedConvAEConfig())["first_layer_dilation"] == 2


def transposed_convolution_reference(x, kernel, dilation):
    """A stride-1 "same" transposed convolution by its definition: each input pixel scatters kernel-weighted copies."""
    (kh, kw, _, _), (dh, dw) = kernel.shape, dilation
    batch, height, width, _ = x.shape
    total_h, total_w = (kh - 1) * dh, (kw - 1) * dw
    full = np.zeros((batch, height + total_h, width + total_w, kernel.shape[2]))
    for a in range(kh):
        for b in range(kw):
            full[:, a * dh:a * dh + height, b * dw:b * dw + width] += x @ kernel[a, b].T
    return full[:, total_h // 2:total_h // 2 + height, total_w // 2:total_w // 2 + width]


@pytest.mark.parametrize("kernel_size, dilation", [((3, 3), (2, 2)), ((4, 5), (2, 3)), ((2, 2), (3, 1))])
def test_the_dilated_decoder_layer_is_a_transposed_convolution(kernel_size, dilation, rng):
    """deconv1 of dilated_conv_ae is computed as a plain convolution (TensorFlow's dilated Conv2DBackpropInput
    exists only in its oneDNN path); it must be the transposed convolution its weights describe, on every CPU."""
    layer = conv_ae._StrideOneTransposedConv(2, kernel_size, padding="same", dilation_rate=dilation)
    x = rng.standard_normal((2, 9, 11, 3)).astype(np.float32)
    layer.build(x.shape)
    layer.bias.assign(rng.standard_normal(2))
    expected = transposed_convolution_reference(x, layer.kernel.numpy(), dilation) + layer.bias.numpy()
    np.testing.assert_allclose(layer(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(TINY))
def test_checkpoints_hold_every_weight(name, tmp_path):
    """Keras 3 keeps layers held in lists out of TensorFlow's object graph unless the model exposes them."""
    model = build(name)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    saved = [n for n, _ in tf.train.list_variables(path) if n.startswith("model/")]
    weights = [v for v in model.variables if "seed_generator" not in v.path]  # dropout RNG state: not weights
    assert len(saved) == len(weights) > 0


def test_the_spectrogram_model_is_the_identity_at_any_rate():
    spec = registry.lookup("spectrogram")
    assert not spec.trainable and spec.any_sample_rate
    x = tf.random.uniform([2, 7, 33], seed=0)
    features = registry.build_model("spectrogram").features(x)
    assert list(features) == ["log_magnitude"]
    np.testing.assert_array_equal(features["log_magnitude"].numpy(), x.numpy())


def test_style_encoder_standardises_features_with_their_training_statistics():
    """Training tracks each style feature's mean and spread (the first batch sets them); the code is of
    standardised features and the decoder answers in the original units. conv_vae's copy, trained through
    its own loss in raw units, has none."""
    model = build("style_encoder")
    waveforms = tf.constant(np.stack([chirp(0.5, SAMPLE_RATE), harmonic_tone(0.5, SAMPLE_RATE),
                                      0.3 * chirp(0.5, SAMPLE_RATE, f0=300.0)]))
    features = model.style_features(waveforms)
    np.testing.assert_array_equal(model.feature_scale.numpy(), 1.0)
    model.compute_losses({"waveform": waveforms}, training=True)
    mean, variance = tf.nn.moments(features, axes=[0])
    np.testing.assert_allclose(model.feature_mean.numpy(), mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.feature_scale.numpy(), np.sqrt(variance.numpy() + 1e-6), rtol=1e-5)
    model.compute_losses({"waveform": waveforms[:2]}, training=True)  # later batches move them by 1 %
    two_mean = tf.reduce_mean(features[:2], axis=0).numpy()
    np.testing.assert_allclose(model.feature_mean.numpy(), 0.99 * mean.numpy() + 0.01 * two_mean, rtol=1e-4,
                               atol=1e-6)
    model.compute_losses({"waveform": waveforms}, training=False)  # evaluation leaves them alone
    np.testing.assert_allclose(model.feature_mean.numpy(), 0.99 * mean.numpy() + 0.01 * two_mean, rtol=1e-4,
                               atol=1e-6)
    standardised = (features - model.feature_mean) / model.feature_scale
    np.testing.assert_allclose(model.encode(features).numpy(), model.encoder(standardised).numpy(), atol=1e-5)
    assert not build("conv_vae").style.standardise


def test_content_features_follow_the_envelope_not_the_pitch():
    """The same moving formant over harmonic combs of two pitches gives the same content; without the lifter the
    pitch gets through."""
    bins, frames = np.arange(SIGNAL["frame_length"] // 2 + 1), np.arange(20)[:, np.newaxis]
    formant = 2.0 * np.exp(-0.5 * ((bins - 20 - 3 * frames) / 8.0) ** 2)  # [frames, bins], moving up
    # Harmonic combs at whole quefrencies 40-64 (every 4-6.4 bins, above the lifter), the pitch gliding down in one
    # and up in the other.
    quefrencies = np.round(np.linspace(40, 64, 20))[:, np.newaxis]
    spectra = [tf.constant((formant + 1.0 + 0.5 * np.cos(2 * np.pi * bins * q / SIGNAL["frame_length"]))[np.newaxis],
                           tf.float32) for q in (quefrencies, quefrencies[::-1])]
    for lifter, same in ((30, True), (0, False)):
        model = registry.build_model("content_encoder", **SIGNAL, **{**TINY["content_encoder"], "input_lifter": lifter})
        low, high = (model.features(x)["content"].numpy() for x in spectra)
        assert (np.max(np.abs(low - high)) < 1e-3) == same, (lifter, np.max(np.abs(low - high)))


def test_content_features_ignore_a_fixed_spectral_tilt_and_are_normalised_per_channel(batch):
    """A voice's long-term spectrum (a fixed gain per bin) and its level per channel do not reach the content."""
    model = build("content_encoder")
    x = batch["log_magnitude"]
    content = model.features(x)["content"]
    tilted = model.features(x + tf.linspace(0.0, 2.0, x.shape[-1]))["content"]
    np.testing.assert_allclose(tilted, content, atol=1e-4)
    np.testing.assert_allclose(tf.reduce_mean(content, axis=1), 0.0, atol=1e-4)
    spread = tf.math.reduce_std(content, axis=1).numpy()
    # 1, less the variance floor's share; the steady tone's envelope hardly moves, so only the chirp's is near 1.
    assert np.all(spread <= 1.0) and np.all(spread[0] > 0.9)
    assert model.feature_roles() == {"content": "content"}
