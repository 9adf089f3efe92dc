"""Source-filter voice conversion: the content's words and intonation in the style voice's pitch range, vocal-tract
length and spectral envelope.

A voice is, to a good approximation, a source (the glottal pulses: pitch) through a filter (the vocal tract: the
spectral envelope). Identity lives largely in the pitch range, the vocal-tract length and the envelope's shape; the
words live in how the envelope moves and the intonation in the pitch contour. So:

- `analyse`: f0 by librosa's pYIN, and each frame's true envelope (cepstral smoothing iterated so that it hugs the
  harmonic peaks instead of running between peaks and valleys), in tf.signal.
- `convert`: log-f0 moved to the style's mean and spread (the contour's shape stays); the envelope's frequency axis
  warped by the factor that best matches the style's mean envelope (vocal-tract length); then, for voiced and for
  unvoiced frames apart, each frequency's mean and spread over time moved to the style's.
- `synthesise`: harmonics at the new f0 with amplitudes read off the envelope, and noise shaped by the envelope
  where the content is unvoiced (weakly, and only at high frequencies, where it is voiced); each frame's loudness is
  then the content's, so pauses stay pauses.

A melody (`transfer(..., instrument=True)`, `convert_instrument`) keeps its notes: an instrument's identity is in
how loud each harmonic is at each pitch and each moment of a note, and in the noise beside the harmonics (bow,
breath, hammer). So each voiced frame takes the harmonic pattern of the style frames nearest to it in pitch and in
time since their note began, and the noise share is fitted until the synthesis lies as far below its harmonics,
between and under them, as the style does. Pitch comes from the YIN tracker here (pYIN over five octaves takes
about 2 s per second of audio).

Measured on the dev pairs, this is what moves a voice (tfstyle's README, quality section); a Gram-matrix
optimisation of the whole spectrum cannot move the pitch, and it smears what the envelope does over time.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfstyle import spectral_ops

# Time constants, so that every rate gets the same analysis: a 32 ms window with a 5 ms hop resolves the harmonics
# of a voice above about 90 Hz while following formant movement; the lifter keeps quefrencies below 3.1 ms, under
# the period of any speaking pitch up to 320 Hz (what lies above it is the harmonics, not the envelope).
WINDOW_S = 0.032
HOP_S = 0.005
LIFTER_S = 0.003125
F0_RANGE_HZ = (50.0, 500.0)
INSTRUMENT_F0_RANGE_HZ = (60.0, 2000.0)  # a bass guitar's low B to a piccolo's top octave, roughly
INSTRUMENT_HARMONICS = 40
SPEECH_MAX_SCORE = 1.2  # see sounds_like_speech
CHUNK_S = 20.0  # longer content clips are converted piece by piece (see `transfer`): about 0.5 GB at most
_WARP_FACTORS = np.linspace(0.8, 1.25, 19)  # vocal-tract length ratios from a child's to a large man's


@dataclasses.dataclass(frozen=True)
class Settings:
    """The analysis's STFT and lifter at one sample rate (see `settings_for`)."""

    sample_rate: int
    frame_length: int
    frame_step: int
    fft_length: int
    lifter: int
    instrument: bool = False  # a melody's analysis: its pitch range, and where each note begins

    @property
    def f0_range(self) -> tuple[float, float]:
        return INSTRUMENT_F0_RANGE_HZ if self.instrument else F0_RANGE_HZ

    @property
    def stft(self) -> dict:
        return dict(frame_length=self.frame_length, frame_step=self.frame_step, fft_length=self.fft_length)


def settings_for(sample_rate: int, *, instrument: bool = False) -> Settings:
    """The analysis at `sample_rate`, for a voice or (`instrument`) for a melody: the pitch range of either."""
    frame_length = round(WINDOW_S * sample_rate)
    return Settings(sample_rate=sample_rate, frame_length=frame_length, frame_step=round(HOP_S * sample_rate),
                    fft_length=int(2 ** np.ceil(np.log2(2 * frame_length))), lifter=round(LIFTER_S * sample_rate),
                    instrument=instrument)


@dataclasses.dataclass
class Analysis:
    """What `analyse` finds in a clip.

    Attributes:
        f0: fundamental frequency per frame in Hz, float64 [frames]; NaN where unvoiced.
        voiced: bool [frames].
        log_envelope: natural-log spectral envelope of |STFT|, float32 [frames, bins].
        length: the clip's samples.
        log_spectrum: natural-log |STFT|, float32 [frames, bins] (what the envelope was taken from).
        frames_since_onset: for a melody (`Settings.instrument`), how many frames ago each frame's note began,
            int [frames]; else None.
    """

    f0: np.ndarray
    voiced: np.ndarray
    log_envelope: tf.Tensor
    length: int
    log_spectrum: tf.Tensor
    frames_since_onset: np.ndarray | None = None


def sounds_like_speech(waveform: tf.Tensor, sample_rate: int) -> bool:
    """Whether a clip is pitched the way speech is rather than the way a melody is, from a quick YIN pass at 8 kHz
    (`yin`): speech is voiced part of the time (pauses, unvoiced consonants) and its pitch glides, while a melody is
    pitched nearly throughout and holds each note. The score is the share of voiced 20 ms frames plus the share of
    steps between voiced frames that hold the pitch (within 0.05 semitones); on the corpus it is 0.15-0.98 for
    every speech file and 1.39-1.94 for every melody, so `SPEECH_MAX_SCORE` sits in between."""
    from tfstyle import audio_io

    rate = 8000
    waveform = audio_io.resample(tf.convert_to_tensor(waveform, tf.float32), rate_in=sample_rate, rate_out=rate)
    if int(waveform.shape[0]) < 512:
        return False
    f0, voiced = yin(waveform, rate)
    steps = np.abs(np.diff(12 * np.log2(f0)))[voiced[1:] & voiced[:-1]]
    held = float(np.mean(steps < 0.05)) if steps.size else 0.0
    return float(np.mean(voiced)) + held < SPEECH_MAX_SCORE


def yin(waveform: tf.Tensor, sample_rate: int, *, frame_length: int = 512, frame_step: int = 160,
        threshold: float = 0.2, f0_range: tuple[float, float] = F0_RANGE_HZ) -> tuple[np.ndarray, np.ndarray]:
    """(f0 in Hz per centred frame, NaN where unvoiced; voiced) by YIN (de Cheveigne and Kawahara 2002): the lag
    where the cumulative-mean-normalised difference of a frame and its shift first dips below `threshold`, refined
    by a parabola. Frames more than 50 dB below the loudest are unvoiced. The differences come from one FFT
    correlation per frame (tf.signal), so a minute of audio takes a fraction of a second."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    frames = tf.signal.frame(tf.pad(waveform, [[frame_length // 2, frame_length // 2]], mode="REFLECT"),
                             frame_length, frame_step)
    longest = min(int(sample_rate / f0_range[0]), frame_length // 2)
    shortest = int(sample_rate / f0_range[1])
    compared = frame_length - longest  # the stretch of each frame compared with its shifts
    fft_length = 2 * frame_length
    # sum_j x_j x_(j + lag) over j < compared, for every lag at once.
    correlation = tf.signal.irfft(tf.math.conj(tf.signal.rfft(frames[:, :compared], [fft_length]))
                                  * tf.signal.rfft(frames, [fft_length]), [fft_length])[:, :longest + 1]
    energy = tf.pad(tf.cumsum(frames ** 2, axis=1), [[0, 0], [1, 0]])  # energy[:, k]: the first k samples'
    lags = tf.range(longest + 1)
    shifted_energy = tf.gather(energy, compared + lags, axis=1) - tf.gather(energy, lags, axis=1)
    difference = tf.maximum(energy[:, compared:compared + 1] + shifted_energy - 2 * correlation, 0.0)
    running_mean = tf.cumsum(difference[:, 1:], axis=1) / tf.cast(lags[1:], tf.float32)
    normalised = (difference[:, 1:] / tf.maximum(running_mean, 1e-10)).numpy()[:, shortest - 1:]  # lags shortest..

    rows = np.arange(normalised.shape[0])
    below = normalised < threshold
    lag = np.where(below.any(1), np.argmax(below, 1), np.argmin(normalised, 1))
    while True:  # on down to the bottom of that dip
        following = np.minimum(lag + 1, normalised.shape[1] - 1)
        deeper = normalised[rows, following] < normalised[rows, lag]
        if not deeper.any():
            break
        lag = np.where(deeper, following, lag)
    left = normalised[rows, np.maximum(lag - 1, 0)]
    right = normalised[rows, np.minimum(lag + 1, normalised.shape[1] - 1)]
    bottom = normalised[rows, lag]
    curvature = left - 2 * bottom + right
    offset = np.clip(0.5 * (left - right) / np.where(np.abs(curvature) > 1e-9, curvature, np.inf), -1.0, 1.0)
    loudness = tf.sqrt(tf.reduce_mean(frames ** 2, axis=1)).numpy()
    voiced = (bottom < threshold) & (loudness > 10 ** (-50 / 20) * loudness.max())
    return np.where(voiced, sample_rate / (lag + shortest + offset), np.nan), voiced


def true_envelope(log_spectrum: tf.Tensor, lifter: int, iterations: int = 8) -> tf.Tensor:
    """The smooth curve through the peaks of log spectra [..., bins]: cepstral smoothing, where each pass raises the
    target to the spectrum wherever the last envelope fell below it (the "true envelope" of Roebel and Rodet).

    One pass is `spectral_ops.spectral_envelope`, which runs midway between harmonics and valleys; the harmonics'
    own levels are what a synthesiser needs.
    """
    target, envelope = log_spectrum, log_spectrum
    for _ in range(iterations):
        envelope = spectral_ops.spectral_envelope(target, lifter)
        target = tf.maximum(log_spectrum, envelope)
    return envelope


def analyse(waveform: tf.Tensor, settings: Settings) -> Analysis:
    """f0, voicing and true envelope of a mono float32 waveform at `settings.sample_rate`."""
    import librosa  # Deferred: only the analysis needs it, and it is slow to import.

    waveform = tf.convert_to_tensor(waveform, tf.float32)
    length = int(waveform.shape[0])
    magnitude = tf.abs(spectral_ops.stft(waveform, **settings.stft))
    frames = int(magnitude.shape[0])
    log_spectrum = tf.math.log(magnitude + 1e-7)
    log_envelope = true_envelope(log_spectrum, settings.lifter)
    if settings.instrument:  # a melody is clean and held: YIN is enough, and pYIN over five octaves is slow
        f0, voiced = yin(waveform, settings.sample_rate, frame_length=settings.fft_length,
                         frame_step=settings.frame_step, f0_range=settings.f0_range)
    else:
        f0, voiced, _ = librosa.pyin(waveform.numpy(), fmin=settings.f0_range[0], fmax=settings.f0_range[1],
                                     sr=settings.sample_rate, frame_length=settings.fft_length,
                                     hop_length=settings.frame_step)
    f0, voiced = _fit(f0, frames, np.nan), _fit(voiced, frames, False)
    voiced &= np.isfinite(f0)
    since_onset = frames_since_onset(waveform.numpy(), settings, frames) if settings.instrument else None
    return Analysis(f0=f0, voiced=voiced, log_envelope=log_envelope, length=length, log_spectrum=log_spectrum,
                    frames_since_onset=since_onset)


def frames_since_onset(waveform: np.ndarray, settings: Settings, frames: int) -> np.ndarray:
    """For each of `frames` analysis frames, how many frames ago the latest note began (librosa's onset detector,
    each onset moved back to the energy minimum before it); the clip's start counts as an onset."""
    import librosa

    onsets = librosa.onset.onset_detect(y=waveform, sr=settings.sample_rate, hop_length=settings.frame_step,
                                        backtrack=True, units="frames")
    starts = np.zeros(frames, np.int64)
    starts[onsets[onsets < frames]] = onsets[onsets < frames]
    return np.arange(frames) - np.maximum.accumulate(starts)


def _fit(values: np.ndarray, frames: int, fill) -> np.ndarray:
    # pYIN pads its frames a little differently from tfstyle's centred STFT: at most a frame or two at the end.
    out = np.full(frames, fill, dtype=values.dtype)
    out[: min(frames, len(values))] = values[:frames]
    return out


def move_pitch(content: Analysis, style: Analysis) -> np.ndarray:
    """The content's f0 with its log mean and spread those of the style's voiced frames; the contour keeps its shape."""
    f0 = content.f0.copy()
    if content.voiced.sum() < 2 or style.voiced.sum() < 2:
        return f0
    log_content, log_style = np.log(content.f0[content.voiced]), np.log(style.f0[style.voiced])
    spread = log_style.std() / max(log_content.std(), 1e-6)
    f0[content.voiced] = np.exp((log_content - log_content.mean()) * spread + log_style.mean())
    return f0


def warp_frequencies(log_envelope: tf.Tensor, factor: float) -> tf.Tensor:
    """Envelopes [..., bins] with the frequency axis scaled: what was at bin b moves to bin b * factor (a factor
    above 1 is a shorter vocal tract: formants move up). Past the last bin the edge value holds."""
    bins = int(log_envelope.shape[-1])
    source = np.clip(np.arange(bins) / factor, 0, bins - 1)
    below = np.floor(source).astype(np.int32)
    above = np.minimum(below + 1, bins - 1)
    fraction = tf.constant(source - below, tf.float32)
    return (tf.gather(log_envelope, below, axis=-1) * (1 - fraction)
            + tf.gather(log_envelope, above, axis=-1) * fraction)


def vocal_tract_factor(content: Analysis, style: Analysis) -> float:
    """The warp factor (0.8-1.25) under which the content's mean voiced envelope correlates best with the style's,
    over the lower four fifths of the band (the top is mostly noise and the anti-aliasing roll-off)."""
    if content.voiced.sum() < 2 or style.voiced.sum() < 2:
        return 1.0
    content_mean = tf.reduce_mean(tf.boolean_mask(content.log_envelope, content.voiced), axis=0)
    style_mean = tf.reduce_mean(tf.boolean_mask(style.log_envelope, style.voiced), axis=0).numpy()
    top = int(content_mean.shape[0]) * 4 // 5
    scores = [np.corrcoef(warp_frequencies(content_mean, factor).numpy()[:top], style_mean[:top])[0, 1]
              for factor in _WARP_FACTORS]
    return float(_WARP_FACTORS[int(np.argmax(scores))])


def _smooth_along_bins(values: tf.Tensor, width: int = 9) -> tf.Tensor:
    """Moving average of [bins] over `width` bins (about 140 Hz at 16 kHz), reflected at the band's edges."""
    padded = tf.pad(values[tf.newaxis, :, tf.newaxis], [[0, 0], [width // 2, width // 2], [0, 0]], mode="REFLECT")
    return tf.nn.conv1d(padded, tf.ones([width, 1, 1]) / width, stride=1, padding="VALID")[0, :, 0]


def match_envelope_statistics(log_envelope: tf.Tensor, mask: np.ndarray, style_log_envelope: tf.Tensor,
                              style_mask: np.ndarray) -> tf.Tensor:
    """The frames of `log_envelope` [frames, bins] where `mask` holds, with each frequency's mean and spread over
    time moved to those of the style's frames where `style_mask` holds (smoothed along frequency; the spread's
    ratio kept within 0.5-2 so that one odd frequency cannot blow up). Other frames are returned unchanged."""
    if mask.sum() < 3 or style_mask.sum() < 3:
        return log_envelope
    ours, theirs = tf.boolean_mask(log_envelope, mask), tf.boolean_mask(style_log_envelope, style_mask)
    mean, spread = tf.reduce_mean(ours, 0), tf.math.reduce_std(ours, 0) + 1e-3
    ratio = tf.clip_by_value(_smooth_along_bins((tf.math.reduce_std(theirs, 0) + 1e-3) / spread), 0.5, 2.0)
    shift = _smooth_along_bins(tf.reduce_mean(theirs, 0) - mean)
    moved = (log_envelope - mean) * ratio + mean + shift
    return tf.where(tf.constant(mask)[:, tf.newaxis], moved, log_envelope)


@dataclasses.dataclass
class Conversion:
    """What `convert` did (recorded in the transfer's JSON)."""

    vocal_tract_factor: float
    content_median_f0: float
    style_median_f0: float
    result_median_f0: float
    pieces: int = 1  # how many pieces a long clip was converted in (see `transfer`)
    instrument: bool = False  # a melody's conversion (`convert_instrument`), not a voice's

    def as_dict(self) -> dict:
        return {name: round(value, 3) if isinstance(value, float) else value
                for name, value in dataclasses.asdict(self).items()}


def convert(content: Analysis, style: Analysis, settings: Settings, *, seed: int = 0) -> tuple[np.ndarray, Conversion]:
    """The content clip in the style's voice: (float32 waveform as long as the content, what was done)."""
    f0 = move_pitch(content, style)
    factor = vocal_tract_factor(content, style)
    envelope = warp_frequencies(content.log_envelope, factor)
    for voiced in (True, False):
        envelope = match_envelope_statistics(envelope, content.voiced == voiced, style.log_envelope,
                                             style.voiced == voiced)
    waveform = synthesise(f0, content.voiced, envelope, settings, length=content.length, seed=seed)
    return waveform, Conversion(vocal_tract_factor=factor, content_median_f0=_median(content.f0, content.voiced),
                                style_median_f0=_median(style.f0, style.voiced),
                                result_median_f0=_median(f0, content.voiced))


def _median(f0: np.ndarray, voiced: np.ndarray) -> float:
    return float(np.median(f0[voiced])) if voiced.any() else 0.0


def harmonic_levels(spectrum: np.ndarray, analysis: Analysis, settings: Settings,
                    harmonics: int = INSTRUMENT_HARMONICS) -> np.ndarray:
    """Natural-log level of harmonics 1..`harmonics` in each voiced frame of a log |STFT| `spectrum` [frames, bins]
    at `analysis`'s pitch, [frames, harmonics]: the highest bin within one of k * f0 (a peak falls between bins).
    NaN where unvoiced and above 0.95 of the Nyquist frequency."""
    frames, bins = spectrum.shape
    frequency = np.nan_to_num(analysis.f0[:frames])[:, None] * np.arange(1, harmonics + 1)
    centre = np.rint(frequency * settings.fft_length / settings.sample_rate).astype(np.int64)
    levels = np.max([np.take_along_axis(spectrum, np.clip(centre + step, 0, bins - 1), axis=1)
                     for step in (-1, 0, 1)], axis=0)
    present = analysis.voiced[:frames, None] & (frequency > 0) & (frequency < 0.95 * settings.sample_rate / 2)
    return np.where(present, levels, np.nan)


def _note_position(analysis: Analysis, rows: np.ndarray, settings: Settings) -> np.ndarray:
    # [rows, 2]: pitch in semitones, and log time since the note began (10 ms units: the attack changes fastest).
    seconds = analysis.frames_since_onset[rows] * settings.frame_step / settings.sample_rate
    return np.stack([12 * np.log2(analysis.f0[rows]), 2.0 * np.log1p(seconds / 0.01)], axis=1)


def instrument_levels(content: Analysis, style: Analysis, settings: Settings, *, neighbours: int = 4,
                      block: int = 1024) -> np.ndarray:
    """The content's harmonic levels [frames, harmonics] as the style instrument would play each note: every voiced
    frame takes the mean pattern of levels (relative to the strongest harmonic) of the `neighbours` style frames
    nearest to it in pitch and in time since their note began (`_note_position`, L1), and keeps its own strongest
    harmonic's level. An instrument's timbre changes with register and over a note (a piano's brightness decays),
    which one average over the style clip would lose; the notes themselves (f0) are the content's."""
    ours = harmonic_levels(content.log_spectrum.numpy(), content, settings)
    theirs = harmonic_levels(style.log_spectrum.numpy(), style, settings)
    keys = np.flatnonzero(style.voiced & np.isfinite(theirs).any(axis=1))
    rows = np.flatnonzero(content.voiced & np.isfinite(ours).any(axis=1))
    if keys.size < neighbours or rows.size == 0:
        return ours
    relative = theirs[keys] - np.nanmax(theirs[keys], axis=1, keepdims=True)
    known = np.isfinite(relative)
    relative = np.where(known, relative, 0.0)
    key_positions = _note_position(style, keys, settings)
    out = ours.copy()
    for start in range(0, rows.size, block):  # [block, style frames] distances at a time: memory stays bounded
        chunk = rows[start:start + block]
        distance = np.abs(_note_position(content, chunk, settings)[:, None, :] - key_positions[None]).sum(-1)
        nearest = np.argpartition(distance, neighbours - 1, axis=1)[:, :neighbours]
        counts = known[nearest].sum(axis=1)
        pattern = relative[nearest].sum(axis=1) / np.maximum(counts, 1)
        # A harmonic the style never had at that pitch (above its Nyquist cut) gets the pattern's lowest level.
        lowest = np.min(np.where(counts > 0, pattern, np.inf), axis=1, keepdims=True)
        pattern = np.where(counts > 0, pattern, lowest)
        out[chunk] = np.where(np.isfinite(ours[chunk]),
                              np.nanmax(ours[chunk], axis=1, keepdims=True) + pattern, np.nan)
    return out


def envelope_through_levels(levels: np.ndarray, analysis: Analysis, settings: Settings) -> tf.Tensor:
    """A log envelope [frames, bins] through each voiced frame's harmonic `levels` (linear between harmonics,
    level beyond the first and the last), so that `synthesise` reads them back at k * f0; frames without levels
    keep `analysis.log_envelope`."""
    fallback = analysis.log_envelope.numpy()
    frames, bins = fallback.shape
    count = np.isfinite(levels).sum(axis=1)  # harmonics 1..count are present (see harmonic_levels)
    f0 = np.where(count > 0, np.nan_to_num(analysis.f0[:frames], nan=1.0), 1.0)
    frequency = np.arange(bins) * settings.sample_rate / settings.fft_length
    position = np.clip(frequency[None, :] / f0[:, None] - 1, 0, np.maximum(count - 1, 0)[:, None])
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(count - 1, 0)[:, None])
    values = np.nan_to_num(levels)
    fraction = position - below
    through = (np.take_along_axis(values, below, axis=1) * (1 - fraction)
               + np.take_along_axis(values, above, axis=1) * fraction)
    return tf.constant(np.where((count > 0)[:, None], through, fallback), tf.float32)


def between_harmonics_level(log_spectrum: tf.Tensor, analysis: Analysis, settings: Settings, *,
                            cell: int = 16) -> np.ndarray:
    """How far the spectrum midway between harmonics (and at a quarter and half of f0, below the first) lies below
    the harmonics around it, per frequency bin [bins] (natural log): the noise a sound carries beside its harmonics
    (bow, breath, hammer), read off
    `log_spectrum` at `analysis`'s pitch. Each voiced frame's depths are averaged over cells of `cell` bins, the
    median over frames taken per cell (attacks and note changes are outliers), and the cells interpolated."""
    spectrum = log_spectrum.numpy()[:len(analysis.f0)]
    frames, bins = spectrum.shape
    levels = harmonic_levels(spectrum, analysis, settings)
    # Below the fundamental counts too, against the first harmonic: a hammer's thump or a bow's rasp lies there.
    multiples = np.concatenate([[0.25, 0.5], np.arange(1, levels.shape[1]) + 0.5])
    around = np.concatenate([levels[:, :1], levels[:, :1], 0.5 * (levels[:, :-1] + levels[:, 1:])], axis=1)
    midway = multiples * np.nan_to_num(analysis.f0[:frames])[:, None]
    position = np.clip(midway * settings.fft_length / settings.sample_rate, 0, bins - 1)
    below = np.floor(position).astype(np.int64)
    fraction = position - below
    valley = (np.take_along_axis(spectrum, below, axis=1) * (1 - fraction)
              + np.take_along_axis(spectrum, np.minimum(below + 1, bins - 1), axis=1) * fraction)
    depth = valley - around
    present = np.isfinite(depth)
    if not present.any():
        return np.zeros(bins)
    cells = -(-bins // cell)
    index = (np.arange(frames)[:, None] * cells + np.rint(position).astype(np.int64) // cell)[present]
    counts = np.bincount(index, minlength=frames * cells).reshape(frames, cells)
    sums = np.bincount(index, weights=depth[present], minlength=frames * cells).reshape(frames, cells)
    per_frame = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    seen = np.isfinite(per_frame).any(axis=0)
    median = np.nanmedian(per_frame[:, seen], axis=0)
    centres = (np.arange(cells) * cell + (cell - 1) / 2)[seen]
    return _smooth_along_bins(tf.constant(np.interp(np.arange(bins), centres, median), tf.float32), 15).numpy()


def fit_voiced_noise(analysis: Analysis, log_envelope: tf.Tensor, target: np.ndarray, settings: Settings, *,
                     seed: int = 0, rounds: int = 2) -> np.ndarray:
    """The noise share [bins] in voiced frames (see `synthesise`) under which a synthesis of `analysis`'s pitch and
    voicing through `log_envelope` lies as far below its
    harmonics midway between them as `target` says (`between_harmonics_level` of the style): synthesise, measure,
    scale the share by the shortfall, `rounds` times (the measure is nearly proportional to the share's log, so
    two rounds land within about 0.1 of the target)."""
    share = np.full(int(log_envelope.shape[1]), 0.03)
    for _ in range(rounds):
        waveform = synthesise(analysis.f0, analysis.voiced, log_envelope, settings, length=analysis.length,
                              seed=seed, voiced_noise=share)
        spectrum = tf.math.log(tf.abs(spectral_ops.stft(waveform, **settings.stft)) + 1e-7)
        share = np.clip(share * np.exp(target - between_harmonics_level(spectrum, analysis, settings)), 1e-3, 1.0)
    return share


def convert_instrument(content: Analysis, style: Analysis, settings: Settings, *, seed: int = 0
                       ) -> tuple[np.ndarray, Conversion]:
    """The content melody played on the style's instrument: the content's notes (f0) and voicing, each note's
    harmonic levels as the style plays that pitch at that point of a note (`instrument_levels`), and as much noise
    between the harmonics as the style has (`fit_voiced_noise`)."""
    envelope = envelope_through_levels(instrument_levels(content, style, settings), content, settings)
    target = between_harmonics_level(style.log_spectrum, style, settings)
    noise = fit_voiced_noise(content, envelope, target, settings, seed=seed)
    waveform = synthesise(content.f0, content.voiced, envelope, settings, length=content.length, seed=seed,
                          voiced_noise=noise)
    median = _median(content.f0, content.voiced)
    return waveform, Conversion(vocal_tract_factor=1.0, content_median_f0=median,
                                style_median_f0=_median(style.f0, style.voiced), result_median_f0=median,
                                instrument=True)


def synthesise(f0: np.ndarray, voiced: np.ndarray, log_envelope: tf.Tensor, settings: Settings, *, length: int,
               seed: int = 0, block: int = 16384, voiced_noise: np.ndarray | None = None) -> np.ndarray:
    """A waveform from f0 [frames] (Hz), voicing [frames] and natural-log envelopes [frames, bins]: harmonics where
    voiced, envelope-shaped noise where not, and in voiced frames `voiced_noise` [bins] of the envelope's level as
    noise (by default a voice's breath: a little, rising from 3 kHz). Harmonics are summed `block` samples at a
    time, so that memory holds [block, harmonics], not [length, harmonics]."""
    frames, bins = int(log_envelope.shape[0]), int(log_envelope.shape[1])
    rate, hop = settings.sample_rate, settings.frame_step
    envelope = tf.exp(log_envelope)
    window = spectral_ops._window(settings.frame_length)

    # f0 runs on through unvoiced gaps, so that the harmonics' phase is continuous where voicing resumes.
    voiced_frames = np.flatnonzero(voiced)
    filled = (np.interp(np.arange(frames), voiced_frames, f0[voiced_frames]) if voiced_frames.size
              else np.full(frames, 100.0))
    positions = np.arange(length) / hop
    f0_per_sample = np.interp(positions, np.arange(frames), filled)
    phase = np.mod(2 * np.pi * np.cumsum(f0_per_sample) / rate, 2 * np.pi)  # float64: exact over long clips
    voicing = np.interp(positions, np.arange(frames), voiced.astype(np.float64)).astype(np.float32)

    # Amplitude of harmonic k in frame t: the envelope at k * f0, as a sinusoid's amplitude (a peak of |STFT|
    # is amplitude * sum(window) / 2).
    harmonics = int(rate / 2 / max(filled.min(), F0_RANGE_HZ[0]))
    number = np.arange(1, harmonics + 1)
    frequency = filled[:, None] * number[None, :]
    bin_position = np.clip(frequency * settings.fft_length / rate, 0, bins - 1)
    below = np.floor(bin_position).astype(np.int32)
    fraction = tf.constant(bin_position - below, tf.float32)
    rows = np.broadcast_to(np.arange(frames)[:, None], below.shape)
    at = lambda b: tf.gather_nd(envelope, np.stack([rows, b], -1))  # noqa: E731
    amplitude = (at(below) * (1 - fraction) + at(np.minimum(below + 1, bins - 1)) * fraction)
    amplitude *= tf.constant(frequency < 0.95 * rate / 2, tf.float32) * (2.0 / tf.reduce_sum(window))

    pieces = []
    for start in range(0, length, block):
        stop = min(start + block, length)
        where = positions[start:stop]
        lower = np.minimum(np.floor(where).astype(np.int32), frames - 1)
        upper = np.minimum(lower + 1, frames - 1)
        step = tf.constant((where - lower)[:, None], tf.float32)
        gains = tf.gather(amplitude, lower) * (1 - step) + tf.gather(amplitude, upper) * step
        waves = tf.sin(tf.constant(np.mod(phase[start:stop, None] * number[None, :], 2 * np.pi), tf.float32))
        pieces.append(tf.reduce_sum(gains * waves, axis=1))
    harmonic = tf.concat(pieces, 0) * voicing

    # White noise of unit variance has E|STFT|^2 = sum(window^2), hence the scale.
    noise = tf.random.stateless_normal([length], seed=[seed, 7])
    spectrum = spectral_ops.stft(noise, **settings.stft)[:frames]
    band = np.arange(bins) * rate / settings.fft_length
    voiced_share = (np.clip((band - 3000.0) / 3000.0, 0.0, 1.0) * 0.5 + 0.03 if voiced_noise is None
                    else voiced_noise)
    share = np.where(voiced[:, None], voiced_share[None, :], 1.0).astype(np.float32)
    shaped = spectrum * tf.cast(envelope * share / tf.norm(window), tf.complex64)
    aperiodic = spectral_ops.inverse_stft(shaped, length=length, **settings.stft)
    return (harmonic + aperiodic).numpy()


def match_loudness(waveform: np.ndarray, reference: np.ndarray, settings: Settings) -> np.ndarray:
    """`waveform` with each hop's loudness (RMS over a window of four hops) that of `reference`: pauses and the
    loudness contour stay the content's."""
    hop = settings.frame_step

    def frame_rms(signal):
        frames = tf.signal.frame(tf.pad(tf.constant(signal, tf.float32), [[2 * hop, 2 * hop]]), 4 * hop, hop)
        return tf.sqrt(tf.reduce_mean(frames ** 2, axis=-1) + 1e-10).numpy()

    ours, theirs = frame_rms(waveform), frame_rms(reference)
    count = min(len(ours), len(theirs))
    gain = np.minimum(theirs[:count] / ours[:count], 100.0)
    centres = np.arange(count) * hop
    return (waveform * np.interp(np.arange(len(waveform)), centres, gain)).astype(np.float32)


def transfer(content: tf.Tensor, style: tf.Tensor, sample_rate: int, *, seed: int = 0,
             chunk_seconds: float = CHUNK_S, instrument: bool = False) -> tuple[np.ndarray, Conversion]:
    """The whole conversion, waveforms to waveform: (the content in the style's voice, or with `instrument` the
    content melody on the style's instrument, with the content's loudness frame by frame; what was done).

    A content clip longer than `chunk_seconds` is converted piece by piece against the one analysis of the style,
    so that memory stays that of one piece; each cut falls at the quietest 10 ms of the second before its nominal
    place (a pause or a consonant), where the loudness match leaves next to nothing to join. The conversion's
    figures are then the medians over the pieces.
    """
    settings = settings_for(sample_rate, instrument=instrument)
    style_analysis = analyse(style, settings)
    conversion_of = convert_instrument if instrument else convert
    content = np.asarray(content, np.float32)
    pieces, conversions = [], []
    for start, stop in quiet_cuts(content, sample_rate, chunk_seconds):
        piece = content[start:stop]
        waveform, conversion = conversion_of(analyse(piece, settings), style_analysis, settings, seed=seed)
        pieces.append(match_loudness(waveform, piece, settings))
        conversions.append(conversion)
    figures = ("vocal_tract_factor", "content_median_f0", "style_median_f0", "result_median_f0")
    merged = Conversion(**{name: float(np.median([getattr(c, name) for c in conversions])) for name in figures},
                        pieces=len(pieces), instrument=instrument)
    return np.concatenate(pieces), merged


def quiet_cuts(waveform: np.ndarray, sample_rate: int, chunk_seconds: float) -> list[tuple[int, int]]:
    """[start, stop) sample ranges covering `waveform`, each at most `chunk_seconds` long, cut at the quietest
    10 ms window in the second before each nominal cut."""
    length, longest = len(waveform), int(chunk_seconds * sample_rate)
    window, search = sample_rate // 100, min(sample_rate, longest // 2)
    cuts, start = [], 0
    while length - start > longest:
        lowest = start + longest - search
        energy = np.convolve(waveform[lowest:start + longest] ** 2, np.ones(window), mode="valid")
        cut = lowest + int(np.argmin(energy)) + window // 2
        cuts.append((start, cut))
        start = cut
    return cuts + [(start, length)]
