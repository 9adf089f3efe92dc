"""Source-filter voice conversion (tfstyle.source_filter) on synthetic voices of a second or less: a glottal-like
harmonic source through one formant, with a pause, whose pitch and formant are known."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, run_transfer
from tfstyle import source_filter, spectral_ops

RATE = 16000


def voice(seconds=0.9, f0=120.0, formant=700.0, glide=0.25, pause=(0.4, 0.55), seed=0):
    """A gliding harmonic source (f0 rising by `glide` octaves and falling back) through one formant of 150 Hz
    bandwidth, silent (but for faint noise) during `pause`."""
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = f0 * 2 ** (glide * np.sin(np.pi * t / seconds))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    signal = np.zeros_like(t)
    for k in range(1, int(RATE / 2 / pitch.max())):
        gain = 1.0 / (1.0 + ((k * pitch - formant) / 150.0) ** 2)
        signal += gain * np.sin(k * phase)
    signal[(t >= pause[0]) & (t < pause[1])] = 0.0
    signal += 1e-4 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def melody(seconds=0.9, notes=(440.0, 494.0, 523.0, 587.0)):
    """Held notes one after another, as an instrument plays a tune."""
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = np.asarray(notes)[np.minimum((t / seconds * len(notes)).astype(int), len(notes) - 1)]
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    return (0.3 * sum(np.sin(k * phase) / k for k in range(1, 6))).astype(np.float32)


def mean_voiced_envelope(analysis):
    return tf.reduce_mean(tf.boolean_mask(analysis.log_envelope, analysis.voiced), 0).numpy()


def peak_frequency(log_envelope, settings):
    return np.argmax(log_envelope) * settings.sample_rate / settings.fft_length


def test_true_envelope_runs_through_the_harmonic_peaks_where_one_lifter_runs_below():
    settings = source_filter.settings_for(RATE)
    log_spectrum = tf.math.log(tf.abs(spectral_ops.stft(voice(glide=0.0), **settings.stft)) + 1e-7)[10:20]
    peaks = np.arange(1, 20) * 120.0 * settings.fft_length / RATE  # the harmonics' bins
    at_peaks = lambda curve: np.mean(curve.numpy()[:, np.round(peaks).astype(int)], 1)  # noqa: E731
    measured = at_peaks(log_spectrum)
    true = at_peaks(source_filter.true_envelope(log_spectrum, settings.lifter))
    plain = at_peaks(spectral_ops.spectral_envelope(log_spectrum, settings.lifter))
    assert np.all(np.abs(true - measured) < 0.25)  # within about 2 dB of the harmonics
    assert np.all(measured - plain > 0.5)  # one pass sits well below them


def test_analysis_finds_pitch_voicing_and_formant():
    settings = source_filter.settings_for(RATE)
    analysis = source_filter.analyse(voice(f0=150.0, glide=0.0), settings)
    assert abs(np.median(analysis.f0[analysis.voiced]) - 150.0) < 3.0
    times = np.arange(analysis.voiced.size) * settings.frame_step / RATE
    assert not analysis.voiced[(times > 0.43) & (times < 0.52)].any()  # the pause
    assert analysis.voiced[(times > 0.1) & (times < 0.35)].mean() > 0.9
    assert abs(peak_frequency(mean_voiced_envelope(analysis), settings) - 700.0) < 80.0


def test_yin_finds_a_tone_and_no_pitch_in_noise(rng):
    t = np.arange(8000) / 8000
    f0, voiced = source_filter.yin(melody(notes=(173.0,))[::2], 8000)
    assert voiced[2:-2].all() and np.all(np.abs(f0[2:-2] - 173.0) < 1.0)  # parabolic refinement: under 1 Hz
    _, voiced = source_filter.yin((0.1 * rng.standard_normal(t.size)).astype(np.float32), 8000)
    assert voiced.mean() < 0.1


def test_speech_is_told_from_a_melody():
    assert source_filter.sounds_like_speech(voice(), RATE)
    assert not source_filter.sounds_like_speech(melody(), RATE)
    # A speech-like clip at another rate is the same clip.
    assert source_filter.sounds_like_speech(tf.constant(voice())[::2], RATE // 2)


def test_warp_moves_a_peak_by_the_factor():
    envelope = tf.constant(np.exp(-0.5 * ((np.arange(513) - 100) / 5.0) ** 2)[None], tf.float32)
    assert int(np.argmax(source_filter.warp_frequencies(envelope, 1.2)[0])) == 120
    assert int(np.argmax(source_filter.warp_frequencies(envelope, 0.8)[0])) == 80


def test_conversion_moves_pitch_and_formant_and_keeps_timing_and_pauses():
    settings = source_filter.settings_for(RATE)
    content_wave, style_wave = voice(f0=110.0, formant=600.0), voice(f0=220.0, formant=900.0, pause=(0.1, 0.3))
    waveform, conversion = source_filter.transfer(content_wave, style_wave, RATE)
    assert waveform.shape == content_wave.shape and np.all(np.isfinite(waveform))

    result = source_filter.analyse(waveform, settings)
    content = source_filter.analyse(content_wave, settings)
    assert abs(conversion.result_median_f0 - conversion.style_median_f0) < 0.05 * conversion.style_median_f0
    assert abs(np.median(result.f0[result.voiced]) - conversion.style_median_f0) < 0.06 * conversion.style_median_f0
    assert conversion.vocal_tract_factor > 1.1  # a higher formant is a shorter tract
    assert abs(peak_frequency(mean_voiced_envelope(result), settings) - 900.0) < 120.0
    # The contour keeps its shape: the result's f0 rises and falls where the content's does.
    both = result.voiced & content.voiced
    assert np.corrcoef(np.log(result.f0[both]), np.log(content.f0[both]))[0, 1] > 0.9
    # The pause stays a pause, and the voiced stretches as loud as the content's.
    t = np.arange(waveform.size) / RATE
    pause, sound = (t > 0.42) & (t < 0.53), (t > 0.1) & (t < 0.35)
    assert np.sqrt(np.mean(waveform[pause] ** 2)) < 0.01 * np.sqrt(np.mean(waveform[sound] ** 2))
    loudness = np.sqrt(np.mean(waveform[sound] ** 2)) / np.sqrt(np.mean(content_wave[sound] ** 2))
    assert 0.8 < loudness < 1.25


def played(notes, gains, *, seconds=0.9, noise=0.0, seed=0):
    """A tune on a synthetic instrument: `notes` (Hz) one after another, harmonic k at `gains[k - 1]`, with white
    noise at `noise` of the tone's RMS."""
    t = np.arange(int(seconds * RATE)) / RATE
    index = np.minimum((t / seconds * len(notes)).astype(int), len(notes) - 1)
    pitch = np.asarray(notes)[index]
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    tone = sum(g * np.sin(k * phase) for k, g in enumerate(gains, 1) if k * pitch.max() < 0.45 * RATE)
    tone = tone + noise * np.sqrt(np.mean(tone ** 2)) * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * tone / np.abs(tone).max()).astype(np.float32)


ODD_ONLY = [1.0 / k if k % 2 else 0.0 for k in range(1, 16)]  # a clarinet-like tone: no even harmonics
EVERY = [1.0 / k for k in range(1, 16)]  # a bowed-string-like tone: all of them


def test_an_instrument_conversion_keeps_the_notes_and_takes_the_style_harmonics():
    settings = source_filter.settings_for(RATE, instrument=True)
    notes = (330.0, 392.0, 440.0, 494.0)
    content_wave = played(notes, EVERY)
    style_wave = played((262.0, 294.0, 349.0, 523.0), ODD_ONLY)  # other notes: only the timbre is to move
    waveform, conversion = source_filter.transfer(content_wave, style_wave, RATE, instrument=True)
    assert conversion.instrument and waveform.shape == content_wave.shape and np.all(np.isfinite(waveform))

    result, content = source_filter.analyse(waveform, settings), source_filter.analyse(content_wave, settings)
    both = result.voiced & content.voiced
    assert both.mean() > 0.8
    assert np.median(np.abs(12 * np.log2(result.f0[both] / content.f0[both]))) < 0.1  # the notes, to 10 cents

    def even_below_odd(analysis):  # how far (natural log) harmonics 2 and 4 sit below 1, 3 and 5
        levels = source_filter.harmonic_levels(analysis.log_spectrum.numpy(), analysis, settings,
                                                harmonics=5)[analysis.voiced & both]
        return np.median(levels[:, [0, 2, 4]].mean(1) - levels[:, [1, 3]].mean(1))

    assert even_below_odd(content) < 1.5
    assert even_below_odd(result) > 2.5  # the style's hollow timbre: even harmonics at least 10 dB down


def test_an_instrument_conversion_carries_as_much_noise_as_the_style():
    settings = source_filter.settings_for(RATE, instrument=True)
    content_wave = played((330.0, 392.0, 440.0, 494.0), EVERY)
    depths = {}
    for noise in (0.0, 0.3):
        style_wave = played((262.0, 294.0, 349.0, 523.0), EVERY, noise=noise)
        style = source_filter.analyse(style_wave, settings)
        waveform, _ = source_filter.transfer(content_wave, style_wave, RATE, instrument=True)
        result = source_filter.analyse(waveform, settings)
        target = source_filter.between_harmonics_level(style.log_spectrum, style, settings)
        depths[noise] = source_filter.between_harmonics_level(result.log_spectrum, result, settings)
        low = slice(0, settings.fft_length // 4)  # below a quarter of the rate: where the harmonics are
        assert np.median(np.abs(depths[noise][low] - target[low])) < 0.7, noise  # within about 6 dB
    assert np.median(depths[0.3] - depths[0.0]) > 1.0  # a noisy style gives a noisier result


def test_an_instrument_conversion_keeps_the_style_noise_below_the_fundamental(rng):
    # A thump under each note (a hammer, a pluck's body) lies below the fundamental, out of reach of the harmonics.
    content_wave = played((330.0, 392.0, 440.0, 494.0), EVERY)
    clean = played((262.0, 294.0, 349.0, 523.0), EVERY)
    spectrum = np.fft.rfft(rng.standard_normal(clean.size))
    spectrum[np.fft.rfftfreq(clean.size, 1 / RATE) > 120.0] = 0.0
    thump = np.fft.irfft(spectrum, clean.size)
    thumped = (clean + 0.3 * np.sqrt(np.mean(clean ** 2)) * thump / np.sqrt(np.mean(thump ** 2))).astype(np.float32)

    def share_below_120_hz(waveform):
        power = np.abs(np.fft.rfft(waveform)) ** 2
        return power[np.fft.rfftfreq(waveform.size, 1 / RATE) < 120.0].sum() / power.sum()

    plain, _ = source_filter.transfer(content_wave, clean, RATE, instrument=True)
    low, _ = source_filter.transfer(content_wave, thumped, RATE, instrument=True)
    assert share_below_120_hz(low) > 10 * share_below_120_hz(plain)
    assert share_below_120_hz(low) > 0.1 * share_below_120_hz(thumped)


def test_an_unvoiced_clip_converts_without_pitch(rng):
    noise = (0.1 * rng.standard_normal(RATE // 2)).astype(np.float32)
    waveform, conversion = source_filter.transfer(noise, voice(), RATE)
    assert waveform.shape == noise.shape and np.all(np.isfinite(waveform))
    assert conversion.vocal_tract_factor == 1.0 and conversion.result_median_f0 == 0.0


@pytest.fixture
def speech_pair(tmp_path):
    import soundfile

    paths = []
    for name, clip in (("content", voice(f0=110.0, formant=600.0)), ("style", voice(f0=220.0, formant=900.0))):
        paths.append(str(tmp_path / f"{name}.wav"))
        soundfile.write(paths[-1], clip, RATE, subtype="PCM_16")
    return paths


@pytest.mark.slow
def test_cli_converts_speech_by_default_and_records_it(speech_pair, tmp_path):
    content, style = speech_pair
    output = tmp_path / "out.wav"
    completed = run_transfer(f"--content={content}", f"--style={style}", f"--output={output}")
    assert completed.returncode == 0, completed.stderr
    assert "source-filter conversion" in completed.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["method"] == "source_filter" and report["source_filter"]["vocal_tract_factor"] > 1.1
    assert abs(report["source_filter"]["result_median_f0"] - report["source_filter"]["style_median_f0"]) < 10.0
    assert report["sample_rate"] == RATE and report["duration_s"] == pytest.approx(0.9, abs=1e-3)

    # --method=gram asks for the Gram optimisation on the same clips.
    completed = run_transfer(f"--content={content}", f"--style={style}", f"--output={output}", "--method=gram",
                             "--steps=2", "--griffin_lim_iters=2")
    assert completed.returncode == 0, completed.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["method"] == "gram" and "source_filter" not in report and report["settings"]["steps"] == 2

    # So does a model asked for: --model=spectrogram's features, not the conversion.
    completed = run_transfer(f"--content={content}", f"--style={style}", f"--output={output}", "--model=spectrogram",
                             "--steps=2", "--griffin_lim_iters=2")
    assert completed.returncode == 0, completed.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["method"] == "gram" and report["model"] == "spectrogram"


@pytest.mark.slow
def test_cli_shipped_speech_example_takes_the_source_filter_and_music_the_gram(tmp_path):
    examples = os.path.join(REPO, "examples")
    output = tmp_path / "speech.wav"
    completed = run_transfer(f"--content={examples}/speech/content_flite_slt_h01.wav",
                             f"--style={examples}/speech/style_flite_awb_h02.wav", f"--output={output}")
    assert completed.returncode == 0, completed.stderr
    report = json.loads((tmp_path / "speech.json").read_text())
    assert report["method"] == "source_filter"
    # slt is a woman, awb a man: the pitch comes down to his.
    assert report["source_filter"]["content_median_f0"] > 150 > report["source_filter"]["result_median_f0"]

    from tfstyle import audio_io
    music = [audio_io.load_audio(f"{examples}/music/{name}.wav") for name in ("content_violin_m06",
                                                                              "style_piano_m02")]
    assert not any(source_filter.sounds_like_speech(waveform, rate) for waveform, rate in music)


@pytest.mark.slow
def test_cli_source_filter_on_a_melody_converts_the_instrument(tmp_path):
    import soundfile

    content, style = str(tmp_path / "content.wav"), str(tmp_path / "style.wav")
    soundfile.write(content, played((330.0, 392.0, 440.0, 494.0), EVERY), RATE, subtype="PCM_16")
    soundfile.write(style, played((262.0, 294.0, 349.0, 523.0), ODD_ONLY), RATE, subtype="PCM_16")
    output = tmp_path / "out.wav"
    completed = run_transfer(f"--content={content}", f"--style={style}", f"--output={output}",
                             "--method=source_filter")
    assert completed.returncode == 0, completed.stderr
    assert "conversion of a melody" in completed.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["method"] == "source_filter" and report["source_filter"]["instrument"] is True
    # The notes stay the content's (a voice conversion would move them to the style's range).
    assert report["source_filter"]["result_median_f0"] == pytest.approx(
        report["source_filter"]["content_median_f0"])
    assert abs(report["source_filter"]["content_median_f0"] - 416.0) < 40.0

    # Left to auto, a melody still takes the Gram optimisation.
    completed = run_transfer(f"--content={content}", f"--style={style}", f"--output={output}", "--steps=2",
                             "--griffin_lim_iters=2")
    assert completed.returncode == 0, completed.stderr
    assert json.loads((tmp_path / "out.json").read_text())["method"] == "gram"


def test_a_long_clip_goes_in_pieces_cut_in_its_pauses():
    pause = (0.4, 0.55)
    content_wave = np.concatenate([voice(f0=110.0, formant=600.0, pause=pause, seed=seed) for seed in range(3)])
    cuts = source_filter.quiet_cuts(content_wave, RATE, chunk_seconds=1.0)
    assert cuts[0][0] == 0 and cuts[-1][1] == content_wave.size
    assert all(a[1] == b[0] and b[1] - b[0] <= RATE for a, b in zip(cuts, cuts[1:]))
    for _, cut in cuts[:-1]:  # each cut lands in a pause (voice() is 0.9 s long)
        within = (cut / RATE) % 0.9
        assert pause[0] <= within <= pause[1], cut / RATE
    waveform, conversion = source_filter.transfer(content_wave, voice(f0=220.0, formant=900.0), RATE,
                                                  chunk_seconds=1.0)
    assert conversion.pieces == len(cuts) >= 3 and waveform.shape == content_wave.shape
    _, whole = source_filter.transfer(content_wave, voice(f0=220.0, formant=900.0), RATE)
    assert abs(conversion.result_median_f0 - whole.result_median_f0) < 5.0
    # Every piece is as loud as the content where the content sounds.
    t = np.arange(content_wave.size) / RATE % 0.9
    sound = (t > 0.1) & (t < 0.35)
    assert 0.8 < np.sqrt(np.mean(waveform[sound] ** 2)) / np.sqrt(np.mean(content_wave[sound] ** 2)) < 1.25
