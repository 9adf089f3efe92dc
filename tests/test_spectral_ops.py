import librosa
import numpy as np
import pytest
import tensorflow as tf

from tfstyle import spectral_ops
from conftest import chirp, harmonic_tone, SAMPLE_RATE

SMALL = dict(frame_length=512, frame_step=128)


def test_stft_matches_librosa_centred_stft():
    x = chirp(0.5)
    ours = spectral_ops.stft_magnitude(x, **SMALL).numpy()
    reference = np.abs(librosa.stft(x, n_fft=512, hop_length=128, pad_mode="reflect")).T
    assert ours.shape == reference.shape == (spectral_ops.num_frames(len(x), frame_step=128), 257)
    np.testing.assert_allclose(ours, reference, atol=1e-3)


@pytest.mark.parametrize("length", [4000, 4001, 4095])
def test_inverse_stft_round_trip_is_exact(length, rng):
    x = rng.standard_normal(length).astype(np.float32) * 0.1
    y = spectral_ops.inverse_stft(spectral_ops.stft(x, **SMALL), length=length, **SMALL).numpy()
    assert y.shape == (length,)
    np.testing.assert_allclose(y, x, atol=1e-5)


def test_stft_in_dataset_map_graph_mode():
    dataset = tf.data.Dataset.from_tensor_slices(np.stack([chirp(0.25), harmonic_tone(0.25)]))
    shapes = [m.shape for m in dataset.map(lambda x: spectral_ops.stft_magnitude(x, **SMALL))]
    assert shapes == [(spectral_ops.num_frames(4000, frame_step=128), 257)] * 2


def test_log_magnitude_round_trip():
    magnitude = tf.constant([[0.0, 0.5, 30.0]])
    np.testing.assert_allclose(
        spectral_ops.magnitude_from_log(spectral_ops.log_magnitude(magnitude)), magnitude, rtol=1e-5
    )
    assert float(spectral_ops.magnitude_from_log(tf.constant(-1.0))) == 0.0


# Fast Griffin-Lim (momentum 0.99) gets there in half the iterations of the classic algorithm (momentum 0).
@pytest.mark.parametrize("momentum, n_iter", [(0.99, 100), (0.0, 200)])
def test_griffin_lim_converges_on_a_chirp(momentum, n_iter):
    x = chirp(1.0)
    magnitude = spectral_ops.stft_magnitude(x, **SMALL)
    first = spectral_ops.griffin_lim(magnitude, n_iter=1, length=len(x), momentum=momentum, **SMALL)
    final = spectral_ops.griffin_lim(magnitude, n_iter=n_iter, length=len(x), momentum=momentum, **SMALL)
    assert final.shape == (len(x),)
    first_sc = float(spectral_ops.spectral_convergence(magnitude, first, **SMALL))
    final_sc = float(spectral_ops.spectral_convergence(magnitude, final, **SMALL))
    assert final_sc < first_sc / 2
    assert final_sc < 0.1


def test_griffin_lim_is_batched_and_seeded():
    waves = np.stack([chirp(0.5), harmonic_tone(0.5)])
    magnitude = spectral_ops.stft_magnitude(waves, **SMALL)
    batch = spectral_ops.griffin_lim(magnitude, n_iter=5, length=waves.shape[1], **SMALL).numpy()
    single = spectral_ops.griffin_lim(magnitude[1], n_iter=5, length=waves.shape[1], **SMALL).numpy()
    assert batch.shape == waves.shape
    # Each example's random phase is drawn for the whole batch, so compare quality, not samples.
    sc = spectral_ops.spectral_convergence(magnitude, batch, **SMALL).numpy()
    assert sc.shape == (2,) and np.all(sc < 0.5)
    again = spectral_ops.griffin_lim(magnitude[1], n_iter=5, length=waves.shape[1], **SMALL).numpy()
    np.testing.assert_array_equal(single, again)


def test_griffin_lim_rejects_bad_settings():
    magnitude = tf.ones([5, 257])
    with pytest.raises(ValueError, match="momentum"):
        spectral_ops.griffin_lim(magnitude, momentum=1.0, **SMALL)
    with pytest.raises(ValueError, match="init"):
        spectral_ops.griffin_lim(magnitude, init="bogus", **SMALL)


def test_griffin_lim_can_start_from_given_phases():
    """From the signal's own STFT, no iteration is needed: the phases are the answer (and a silent bin's phase,
    undefined, starts at 0)."""
    x = chirp(0.5)
    spectrum = spectral_ops.stft(x, **SMALL)
    rebuilt = spectral_ops.griffin_lim(tf.abs(spectrum), n_iter=0, init=spectrum, length=len(x), **SMALL).numpy()
    np.testing.assert_allclose(rebuilt, x, atol=1e-4)
    random = spectral_ops.griffin_lim(tf.abs(spectrum), n_iter=0, length=len(x), **SMALL).numpy()
    assert np.abs(random - x).max() > 0.1
    np.testing.assert_array_equal(spectral_ops.unit_phases(tf.zeros([2, 3], tf.complex64)).numpy(), np.ones([2, 3]))


def test_spectral_convergence_is_zero_for_the_true_signal():
    x = harmonic_tone(0.5)
    magnitude = spectral_ops.stft_magnitude(x, **SMALL)
    assert float(spectral_ops.spectral_convergence(magnitude, x, **SMALL)) < 1e-6
    assert float(spectral_ops.spectral_convergence(magnitude, -x, **SMALL)) < 1e-6  # phase-blind
    assert float(spectral_ops.spectral_convergence(magnitude, 0.5 * x, **SMALL)) == pytest.approx(0.5, rel=1e-4)


def test_mel_and_mfcc_shapes_and_energy():
    x = harmonic_tone(0.5)
    magnitude = spectral_ops.stft_magnitude(x, **SMALL)
    mel = spectral_ops.mel_spectrogram(magnitude, sample_rate=SAMPLE_RATE, n_mels=40)
    mfcc = spectral_ops.mfcc(magnitude, sample_rate=SAMPLE_RATE, n_mfcc=13, n_mels=40)
    assert mel.shape == (magnitude.shape[0], 40)
    assert mfcc.shape == (magnitude.shape[0], 13)
    # A 220 Hz tone puts its energy in the low mel bands.
    band_energy = mel.numpy().sum(axis=0)
    assert band_energy[:25].sum() > 10 * band_energy[25:].sum()


def test_spectral_envelope_keeps_the_formants_and_drops_the_harmonics():
    bins = np.arange(513)
    envelope = 1.0 + np.exp(-0.5 * ((bins - 100) / 30.0) ** 2) + np.linspace(0.0, -0.5, 513)
    harmonics = 0.4 * np.cos(2 * np.pi * bins / 8.0)  # a comb every 8 bins: quefrency 128
    smoothed = spectral_ops.spectral_envelope(tf.constant([envelope + harmonics], tf.float32), lifter=30).numpy()[0]
    np.testing.assert_allclose(smoothed, envelope, atol=0.05)
    unlifted = spectral_ops.spectral_envelope(tf.constant([envelope + harmonics], tf.float32), lifter=512).numpy()[0]
    np.testing.assert_allclose(unlifted, envelope + harmonics, atol=1e-4)  # a lifter past the comb keeps it
