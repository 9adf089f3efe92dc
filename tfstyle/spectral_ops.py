"""Spectral operations in tf.signal and tf.math only, so that they run inside SavedModels served by TF Serving.

Shapes follow tf.signal: waveforms are [..., samples]; spectrograms are [..., frames, bins] with
bins = fft_length // 2 + 1. STFTs are centred as librosa's are (the waveform is padded by frame_length // 2 on each
side), so frame t is centred on sample t * frame_step and a spectrogram has 1 + samples // frame_step frames.
"""

import tensorflow as tf

# Defaults of the signal chain (DESIGN.md): 2048-point Hann STFT with hop 512.
FRAME_LENGTH = 2048
FRAME_STEP = 512


def num_frames(n_samples: int, *, frame_step: int = FRAME_STEP) -> int:
    """Frames in the centred STFT of `n_samples` samples."""
    return 1 + n_samples // frame_step


def _window(frame_length: int) -> tf.Tensor:
    return tf.signal.hann_window(frame_length, periodic=True)


def _frame_and_transform(padded: tf.Tensor, frame_length: int, frame_step: int, fft_length: int) -> tf.Tensor:
    frames = tf.signal.frame(padded, frame_length, frame_step)
    return tf.signal.rfft(frames * _window(frame_length), [fft_length])


def stft(
    waveform: tf.Tensor,
    *,
    frame_length: int = FRAME_LENGTH,
    frame_step: int = FRAME_STEP,
    fft_length: int | None = None,
) -> tf.Tensor:
    """Centred short-time Fourier transform with a periodic Hann window.

    Args:
        waveform: float32 audio, shape [..., samples]; at least frame_length // 2 + 1 samples (reflect padding).
        frame_length: window length in samples.
        frame_step: hop in samples.
        fft_length: FFT size, at least frame_length; defaults to frame_length.

    Returns:
        complex64 STFT, shape [..., 1 + samples // frame_step, fft_length // 2 + 1].
    """
    fft_length = fft_length or frame_length
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    return _frame_and_transform(_reflect_pad(waveform, frame_length), frame_length, frame_step, fft_length)


def _pad_last_axis(x: tf.Tensor, before, after, mode: str = "CONSTANT") -> tf.Tensor:
    # Built from the dynamic rank, so that it also traces when a tf.function has relaxed the rank away.
    paddings = tf.concat([tf.zeros([tf.rank(x) - 1, 2], tf.int32), [[before, after]]], axis=0)
    return tf.pad(x, paddings, mode=mode)


def _reflect_pad(waveform: tf.Tensor, frame_length: int) -> tf.Tensor:
    return _pad_last_axis(waveform, frame_length // 2, frame_length // 2, mode="REFLECT")


def stft_of_padded(padded: tf.Tensor, *, frame_length: int = FRAME_LENGTH, frame_step: int = FRAME_STEP,
                   fft_length: int | None = None) -> tf.Tensor:
    """STFT of a stretch of a waveform padded as `stft` pads it, framed from the stretch's first sample: with
    p = x reflect-padded by frame_length // 2 at each end, frames [k, k + frames) of `stft(x)` are
    `stft_of_padded(p[k * frame_step:(k + frames - 1) * frame_step + frame_length])`."""
    return _frame_and_transform(tf.convert_to_tensor(padded, tf.float32), frame_length, frame_step,
                                fft_length or frame_length)


def stft_magnitude(waveform: tf.Tensor, **stft_kwargs) -> tf.Tensor:
    """|STFT|, shape [..., frames, bins]; keyword arguments as for `stft`."""
    return tf.abs(stft(waveform, **stft_kwargs))


def _window_envelope(n_frames: tf.Tensor, frame_length: int, frame_step: int) -> tf.Tensor:
    # Sum of squared windows under each output sample: dividing by it makes inverse(forward(x)) == x exactly,
    # also at the edges where tf.signal.inverse_stft_window_fn assumes full overlap.
    squared = tf.tile(_window(frame_length)[tf.newaxis, :] ** 2, [n_frames, 1])
    return tf.signal.overlap_and_add(squared, frame_step)


def _overlap_add_inverse(
    spectrum: tf.Tensor, envelope: tf.Tensor, frame_length: int, frame_step: int, fft_length: int
) -> tf.Tensor:
    # Inverse of _frame_and_transform over the padded signal: least-squares overlap-add of windowed frames.
    frames = tf.signal.irfft(spectrum, [fft_length])[..., :frame_length] * _window(frame_length)
    summed = tf.signal.overlap_and_add(frames, frame_step)
    return summed / tf.maximum(envelope, 1e-8)


def inverse_stft(
    spectrum: tf.Tensor,
    *,
    length: int,
    frame_length: int = FRAME_LENGTH,
    frame_step: int = FRAME_STEP,
    fft_length: int | None = None,
) -> tf.Tensor:
    """Inverse of `stft`: inverse_stft(stft(x), length=len(x)) == x up to float error.

    Args:
        spectrum: complex64, shape [..., frames, bins].
        length: samples of the output (the length of the waveform the STFT came from).
        frame_length, frame_step, fft_length: as given to `stft`.

    Returns:
        float32 waveform, shape [..., length].
    """
    fft_length = fft_length or frame_length
    spectrum = tf.convert_to_tensor(spectrum, tf.complex64)
    envelope = _window_envelope(tf.shape(spectrum)[-2], frame_length, frame_step)
    padded = _overlap_add_inverse(spectrum, envelope, frame_length, frame_step, fft_length)
    return _trim_centre_padding(padded, length, frame_length)


def _trim_centre_padding(padded: tf.Tensor, length: int, frame_length: int) -> tf.Tensor:
    waveform = padded[..., frame_length // 2 :]
    missing = tf.maximum(length - tf.shape(waveform)[-1], 0)
    return _pad_last_axis(waveform, 0, missing)[..., :length]


def log_magnitude(magnitude: tf.Tensor) -> tf.Tensor:
    """log(1 + |S|): the feature every zoo model takes; 0 for silence, never -inf."""
    return tf.math.log1p(magnitude)


def log_magnitude_spectrogram(waveform: tf.Tensor, **stft_kwargs) -> tf.Tensor:
    """log(1 + |STFT|) of [..., samples], shape [..., frames, bins]: what every zoo model takes. Keyword arguments
    as for `stft`."""
    return log_magnitude(stft_magnitude(waveform, **stft_kwargs))


def magnitude_from_log(log_mag: tf.Tensor) -> tf.Tensor:
    """Inverse of `log_magnitude`, clamped at 0 so that an optimised spectrogram is a valid magnitude."""
    return tf.math.expm1(tf.maximum(log_mag, 0.0))


def mel_spectrogram(
    magnitude: tf.Tensor,
    *,
    sample_rate: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> tf.Tensor:
    """Mel-scaled power spectrogram, shape [..., frames, n_mels], from |STFT| of shape [..., frames, bins]."""
    weights = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=n_mels,
        num_spectrogram_bins=magnitude.shape[-1],
        sample_rate=sample_rate,
        lower_edge_hertz=fmin,
        upper_edge_hertz=fmax or sample_rate / 2,
    )
    return tf.tensordot(tf.square(magnitude), weights, 1)


def mfcc(magnitude: tf.Tensor, *, sample_rate: int, n_mfcc: int = 20, n_mels: int = 128) -> tf.Tensor:
    """Mel-frequency cepstral coefficients, shape [..., frames, n_mfcc], from |STFT|."""
    log_mel = tf.math.log(mel_spectrogram(magnitude, sample_rate=sample_rate, n_mels=n_mels) + 1e-6)
    return tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :n_mfcc]


@tf.function(reduce_retracing=True)
def _griffin_lim_loop(magnitude, angles, n_iter, momentum, frame_length, frame_step, fft_length, length=None,
                      pinned_frames=0):
    """(overlap-added waveform, final phases). With `length`, the frames are a whole centred clip of that many
    samples, re-padded as `stft` pads it at every iteration; the first `pinned_frames` phases never change."""
    envelope = _window_envelope(tf.shape(magnitude)[-2], frame_length, frame_step)
    pinned = angles[..., :pinned_frames, :]
    magnitude = tf.cast(magnitude, tf.complex64)
    rebuilt = tf.zeros_like(angles)
    # Fast Griffin-Lim (Perraudin, Balazs & Sondergaard 2013): extrapolate the phase estimate with momentum.
    step = tf.cast(momentum / (1.0 + momentum), tf.complex64)
    for _ in tf.range(n_iter):
        previous = rebuilt
        inverse = _overlap_add_inverse(magnitude * angles, envelope, frame_length, frame_step, fft_length)
        if length is not None:
            inverse = _reflect_pad(_trim_centre_padding(inverse, length, frame_length), frame_length)
        rebuilt = _frame_and_transform(inverse, frame_length, frame_step, fft_length)
        rebuilt.set_shape(magnitude.shape)  # a dynamic `length` hides that the frames come back as they went in
        angles = rebuilt - step * previous
        angles = angles / tf.cast(tf.maximum(tf.abs(angles), 1e-30), tf.complex64)
        angles = tf.concat([pinned, angles[..., pinned_frames:, :]], axis=-2)
        angles.set_shape(magnitude.shape)
    return _overlap_add_inverse(magnitude * angles, envelope, frame_length, frame_step, fft_length), angles


def _check_griffin_lim_settings(n_iter: int, momentum: float) -> None:
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")


def griffin_lim(
    magnitude: tf.Tensor,
    *,
    n_iter: int = 32,
    length: int | None = None,
    frame_length: int = FRAME_LENGTH,
    frame_step: int = FRAME_STEP,
    fft_length: int | None = None,
    momentum: float = 0.99,
    init: str | tf.Tensor = "random",
    seed: int = 0,
) -> tf.Tensor:
    """Recovers a waveform whose centred STFT magnitude approximates `magnitude`.

    Fast Griffin-Lim: momentum 0 is the classic algorithm; 0.99 (the default, as librosa's) converges in far fewer
    iterations. The loop is one compiled tf.function whatever n_iter is, and works on any batch shape.

    Args:
        magnitude: |STFT| as `stft_magnitude` returns it, shape [..., frames, bins].
        n_iter: phase-update iterations.
        length: samples of the output; defaults to (frames - 1) * frame_step.
        frame_length, frame_step, fft_length: the STFT settings the magnitude was computed with.
        momentum: in [0, 1); larger is faster but can overshoot.
        init: "random" (uniform phase from `seed`), "zeros" (all phases 0), or a complex STFT of the shape of
            `magnitude` whose phases to start from (e.g. the signal the magnitudes were made from).
        seed: seed of the random initial phase.

    Returns:
        float32 waveform, shape [..., length].
    """
    _check_griffin_lim_settings(n_iter, momentum)
    fft_length = fft_length or frame_length
    magnitude = tf.convert_to_tensor(magnitude, tf.float32)
    if length is None:
        frames = magnitude.shape[-2]
        length = (frames if frames is not None else tf.shape(magnitude)[-2]) * frame_step - frame_step
    if not isinstance(init, str):
        angles = unit_phases(init)
    elif init == "random":
        angles = random_phases(tf.shape(magnitude), seed=[seed, 0])
    elif init == "zeros":
        angles = tf.ones_like(magnitude, tf.complex64)
    else:
        raise ValueError(f"init must be 'random' or 'zeros', got {init!r}")
    padded, _ = _griffin_lim_loop(
        magnitude, angles, tf.constant(n_iter), tf.constant(momentum, tf.float32), frame_length, frame_step,
        fft_length, length=length)
    return _trim_centre_padding(padded, length, frame_length)


def random_phases(shape, seed) -> tf.Tensor:
    """Unit phases uniform over the circle, complex64 of `shape`, from a stateless seed pair."""
    phase = tf.random.stateless_uniform(shape, seed=seed, maxval=2.0 * 3.141592653589793)
    return tf.complex(tf.cos(phase), tf.sin(phase))


def unit_phases(spectrum: tf.Tensor) -> tf.Tensor:
    """spectrum / |spectrum| (1 where the spectrum is 0): the phases of a complex STFT, complex64."""
    spectrum = tf.convert_to_tensor(spectrum, tf.complex64)
    magnitude = tf.abs(spectrum)
    return tf.where(magnitude > 0, spectrum / tf.cast(tf.maximum(magnitude, 1e-30), tf.complex64),
                    tf.ones_like(spectrum))


def griffin_lim_segment(
    magnitude: tf.Tensor,
    angles: tf.Tensor,
    *,
    pinned_frames: int = 0,
    n_iter: int = 32,
    momentum: float = 0.99,
    frame_length: int = FRAME_LENGTH,
    frame_step: int = FRAME_STEP,
    fft_length: int | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Fast Griffin-Lim on one stretch of a longer signal, with the phases of its first frames held fixed.

    The stretch is framed from its first sample (see `stft_of_padded`), with no padding, so that a long signal can
    be rebuilt stretch by stretch: holding the phases that the previous stretch found for the frames both share
    makes the two reconstructions agree there (see tfstyle.chunking).

    Args:
        magnitude: |STFT| of the stretch, [frames, bins].
        angles: initial unit phases, complex64 [frames, bins]; the first `pinned_frames` stay as given.
        pinned_frames: leading frames whose phase is fixed.
        n_iter, momentum, frame_length, frame_step, fft_length: as for `griffin_lim`.

    Returns:
        (the stretch's waveform, [(frames - 1) * frame_step + frame_length]; the final phases, [frames, bins]).
    """
    _check_griffin_lim_settings(n_iter, momentum)
    return _griffin_lim_loop(
        tf.convert_to_tensor(magnitude, tf.float32), tf.convert_to_tensor(angles, tf.complex64), tf.constant(n_iter),
        tf.constant(momentum, tf.float32), frame_length, frame_step, fft_length or frame_length,
        pinned_frames=tf.constant(pinned_frames))


def spectral_convergence(
    magnitude: tf.Tensor,
    waveform: tf.Tensor,
    *,
    frame_length: int = FRAME_LENGTH,
    frame_step: int = FRAME_STEP,
    fft_length: int | None = None,
) -> tf.Tensor:
    """||S - |STFT(x)|||_F / ||S||_F: 0 when `waveform` has exactly the target magnitude; shape [...].

    Args:
        magnitude: target |STFT| S, shape [..., frames, bins].
        waveform: x, shape [..., samples], with 1 + samples // frame_step == frames.
    """
    rebuilt = stft_magnitude(waveform, frame_length=frame_length, frame_step=frame_step, fft_length=fft_length)
    error = tf.norm(magnitude - rebuilt, axis=[-2, -1])
    return error / tf.maximum(tf.norm(magnitude, axis=[-2, -1]), 1e-12)


def spectral_envelope(log_spectrum: tf.Tensor, lifter: int) -> tf.Tensor:
    """The smooth part of log spectra [..., bins] along frequency: their cepstrum below quefrency `lifter` samples.

    Harmonics (pitch, notes) sit at quefrencies of a period and above (64-160 samples for speech at 16 kHz), so a
    lifter of about 30 keeps the envelope (formants, timbre) and drops them.
    """
    cepstrum = tf.signal.irfft(tf.complex(log_spectrum, tf.zeros_like(log_spectrum)))
    quefrencies = tf.range(tf.shape(cepstrum)[-1])
    keep = (quefrencies < lifter) | (quefrencies > tf.shape(cepstrum)[-1] - lifter)
    return tf.math.real(tf.signal.rfft(cepstrum * tf.cast(keep, cepstrum.dtype)))


def _bin_frequencies(n_bins: int, sample_rate: int) -> tf.Tensor:
    return tf.linspace(0.0, sample_rate / 2.0, n_bins)


def spectral_centroid(magnitude: tf.Tensor, *, sample_rate: int) -> tf.Tensor:
    """Magnitude-weighted mean frequency of each frame in Hz, shape [..., frames]; 0 for silent frames."""
    frequencies = _bin_frequencies(magnitude.shape[-1], sample_rate)
    total = tf.reduce_sum(magnitude, axis=-1)
    return tf.math.divide_no_nan(tf.reduce_sum(magnitude * frequencies, axis=-1), total)


def spectral_bandwidth(magnitude: tf.Tensor, *, sample_rate: int) -> tf.Tensor:
    """Magnitude-weighted standard deviation of frequency around the centroid in Hz, shape [..., frames]."""
    frequencies = _bin_frequencies(magnitude.shape[-1], sample_rate)
    centroid = spectral_centroid(magnitude, sample_rate=sample_rate)[..., tf.newaxis]
    total = tf.reduce_sum(magnitude, axis=-1)
    variance = tf.math.divide_no_nan(tf.reduce_sum(magnitude * tf.square(frequencies - centroid), axis=-1), total)
    return tf.sqrt(variance)


def _centred_frames(waveform: tf.Tensor, frame_length: int, frame_step: int) -> tf.Tensor:
    return tf.signal.frame(_reflect_pad(tf.convert_to_tensor(waveform, tf.float32), frame_length), frame_length,
                           frame_step)


def zero_crossing_rate(waveform: tf.Tensor, *, frame_length: int = FRAME_LENGTH, frame_step: int = FRAME_STEP):
    """Fraction of sign changes per sample in each centred frame, shape [..., frames]."""
    frames = _centred_frames(waveform, frame_length, frame_step)
    signs = tf.math.sign(frames)
    crossings = tf.cast(tf.not_equal(signs[..., 1:], signs[..., :-1]), tf.float32)
    return tf.reduce_mean(crossings, axis=-1)


def rms(waveform: tf.Tensor, *, frame_length: int = FRAME_LENGTH, frame_step: int = FRAME_STEP) -> tf.Tensor:
    """Root-mean-square level of each centred frame, shape [..., frames]."""
    frames = _centred_frames(waveform, frame_length, frame_step)
    return tf.sqrt(tf.reduce_mean(tf.square(frames), axis=-1))


def tempo(magnitude: tf.Tensor, *, sample_rate: int, frame_step: int = FRAME_STEP, min_bpm: float = 40.0,
          max_bpm: float = 240.0) -> tf.Tensor:
    """Global tempo estimate in beats per minute, shape [...]: the strongest autocorrelation lag of the onset
    strength (positive log-mel flux) between min_bpm and max_bpm."""
    log_mel = tf.math.log1p(mel_spectrogram(magnitude, sample_rate=sample_rate, n_mels=64))
    onset = tf.reduce_sum(tf.nn.relu(log_mel[..., 1:, :] - log_mel[..., :-1, :]), axis=-1)  # [..., frames - 1]
    onset = onset - tf.reduce_mean(onset, axis=-1, keepdims=True)
    n = tf.shape(onset)[-1]
    spectrum = tf.signal.rfft(onset, [2 * n])
    autocorrelation = tf.signal.irfft(spectrum * tf.math.conj(spectrum), [2 * n])[..., :n]
    frames_per_minute = 60.0 * sample_rate / frame_step
    lags = tf.range(1, n, dtype=tf.float32)
    valid = (frames_per_minute / lags >= min_bpm) & (frames_per_minute / lags <= max_bpm)
    scores = tf.where(valid, autocorrelation[..., 1:], tf.fill(tf.shape(autocorrelation[..., 1:]), -1e30))
    best_lag = tf.cast(tf.argmax(scores, axis=-1), tf.float32) + 1.0
    return tf.where(tf.reduce_any(valid), frames_per_minute / best_lag, 0.0)


N_MFCC = 20
# The style feature vector, in order; units are scaled so that every entry is of order 1.
STYLE_FEATURE_NAMES = (
    tuple(f"mfcc_mean_{i}" for i in range(N_MFCC)) + tuple(f"mfcc_std_{i}" for i in range(N_MFCC))
    + ("centroid_mean_khz", "centroid_std_khz", "bandwidth_mean_khz", "bandwidth_std_khz", "zcr_mean", "zcr_std",
       "rms_mean", "rms_std", "tempo_bpm_per_100")
)


def style_features(waveform: tf.Tensor, *, sample_rate: int, frame_length: int = FRAME_LENGTH,
                   frame_step: int = FRAME_STEP) -> tf.Tensor:
    """Clip-level timbre and rhythm statistics, shape [..., len(STYLE_FEATURE_NAMES)].

    Means and standard deviations over frames of MFCCs (/10), spectral centroid and bandwidth (kHz), zero-crossing
    rate and RMS, plus the tempo (BPM / 100): the style descriptors of the GTZAN genre-transfer work.
    """
    settings = dict(frame_length=frame_length, frame_step=frame_step)
    magnitude = stft_magnitude(waveform, **settings)
    per_frame = [
        mfcc(magnitude, sample_rate=sample_rate, n_mfcc=N_MFCC) / 10.0,
        spectral_centroid(magnitude, sample_rate=sample_rate)[..., tf.newaxis] / 1000.0,
        spectral_bandwidth(magnitude, sample_rate=sample_rate)[..., tf.newaxis] / 1000.0,
        zero_crossing_rate(waveform, **settings)[..., tf.newaxis],
        rms(waveform, **settings)[..., tf.newaxis],
    ]
    statistics = []
    for values in per_frame:  # [..., frames, k] -> mean and std over frames
        mean, variance = tf.nn.moments(values, axes=[-2])
        statistics.append((mean, tf.sqrt(variance)))
    mfcc_mean, mfcc_std = statistics[0]
    rest = [tensor for pair in statistics[1:] for tensor in pair]
    beats = tempo(magnitude, sample_rate=sample_rate, frame_step=frame_step)[..., tf.newaxis] / 100.0
    return tf.concat([mfcc_mean, mfcc_std, *rest, beats], axis=-1)
