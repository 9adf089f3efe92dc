"""Long clips in chunks: the plan, the chunk spectrograms, phase carried across joins, and transfers in chunks."""

import json

import numpy as np
import pytest
import soundfile
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from tfstyle import chunking, configs, registry, spectral_ops, transfer_lib
from conftest import chirp, harmonic_tone, run_transfer

SMALL = dict(frame_length=512, frame_step=128)
RATE = 8000


@settings(max_examples=200, deadline=None)
@given(total=st.integers(1, 5000), most=st.integers(96, 600), overlap=st.integers(1, 32))
def test_chunks_cover_the_clip_in_equal_overlapping_pieces(total, most, overlap):
    chunks = chunking.plan_chunks(total, most, overlap)
    assert chunks[0].start == 0 and chunks[-1].end == total and chunks[0].overlap == 0
    assert len({chunk.frames for chunk in chunks}) == 1 and chunks[0].frames <= most
    for previous, chunk in zip(chunks, chunks[1:]):
        assert chunk.overlap == previous.end - chunk.start >= overlap
        assert chunk.start > previous.start and chunk.overlap < chunk.frames


def test_a_clip_that_fits_is_one_chunk():
    assert chunking.plan_chunks(512, 512, 32) == [chunking.Chunk(0, 512, 0)]
    with pytest.raises(ValueError, match="too short"):
        chunking.plan_chunks(1000, 64, 32)


def test_chunk_spectrograms_are_rows_of_the_whole_one():
    waveform = chirp(1.0, RATE)
    whole = spectral_ops.stft(waveform, **SMALL).numpy()
    whole_log = spectral_ops.log_magnitude_spectrogram(waveform, **SMALL).numpy()
    for chunk in chunking.plan_chunks(whole.shape[0], 30, 4):  # the first and last reach into the reflected ends
        rows = chunking.stft_frames(waveform, chunk, **SMALL)
        np.testing.assert_allclose(rows.numpy(), whole[chunk.start:chunk.end], atol=1e-4)
        np.testing.assert_allclose(spectral_ops.log_magnitude(tf.abs(rows)).numpy(),
                                   whole_log[chunk.start:chunk.end], atol=1e-5)


def frame_errors(waveform, magnitude):
    """Per frame, ||S - |STFT(x)||| / ||S||: where a reconstruction misses its target (a seam shows as a spike)."""
    rebuilt = spectral_ops.stft_magnitude(waveform, **SMALL).numpy()
    return np.linalg.norm(rebuilt - magnitude, axis=1) / np.linalg.norm(magnitude, axis=1)


def seam_ratio(errors, chunks):
    """Worst frame error within a few frames of any join over the 95th percentile of the rest: about 1 or less when
    the joins cannot be told from anywhere else."""
    near = np.zeros(errors.size, bool)
    for chunk in chunks[1:]:
        join = chunk.start + chunk.overlap // 2
        near[join - 6:join + 4] = True
    return errors[near].max() / np.percentile(errors[~near], 95)


def test_griffin_lim_in_chunks_leaves_no_seams():
    """A 6 s chirp rebuilt in 6 chunks. Without carrying the phase across joins, the two reconstructions cancel
    in the crossfade and the join frames miss their magnitudes by ~10x more than frames elsewhere: that is the
    seam the measure catches. With it, the joins are as good as the rest, and as good as one whole Griffin-Lim."""
    waveform = chirp(6.0, RATE, f0=200.0, f1=800.0)
    magnitude = spectral_ops.stft_magnitude(waveform, **SMALL).numpy()
    chunks = chunking.plan_chunks(magnitude.shape[0], 100, chunking.overlap_frames(**SMALL))
    assert len(chunks) >= 5
    results = {}
    for carry_phase in (True, False):
        rebuild = chunking.ChunkedGriffinLim(waveform.size, n_iter=100, momentum=0.99, seed=0,
                                             carry_phase=carry_phase, **SMALL)
        for chunk in chunks:
            rebuild.add(chunk, magnitude[chunk.start:chunk.end])
        assert rebuild.waveform.shape == waveform.shape
        results[carry_phase] = frame_errors(rebuild.waveform, magnitude)
    whole = spectral_ops.griffin_lim(magnitude, n_iter=100, length=waveform.size, **SMALL).numpy()
    assert seam_ratio(results[False], chunks) > 4.0
    assert seam_ratio(results[True], chunks) < 1.3
    assert np.median(results[True]) < 1.5 * np.median(frame_errors(whole, magnitude))


def test_column_pooler_streams_to_the_same_columns():
    frames = np.random.default_rng(0).random((1001, 7))
    pooler = chunking.ColumnPooler(1001, columns=100)
    for start in range(0, 1001, 37):
        pooler.add(frames[start:start + 37])
    pooled = pooler.result()
    assert pooled.shape == (91, 7)  # groups of 11 frames: at most 100 columns
    np.testing.assert_array_equal(pooled[0], frames[:11].max(axis=0))
    np.testing.assert_array_equal(pooled, chunking.pool_columns(frames, columns=100))
    assert chunking.pool_columns(frames[:50], columns=100).shape == (50, 7)  # short: untouched


@pytest.fixture(scope="module")
def model():
    return registry.build_model("random_cnn", n_filters=32, kernel_width=5)


def test_a_short_clip_is_transferred_whole_as_before(model):
    content, style = chirp(0.5, RATE), harmonic_tone(0.4, RATE)
    config = configs.TransferConfig(steps=5, griffin_lim_iters=10, precision="float32")
    style_log = spectral_ops.log_magnitude_spectrogram(style, **SMALL)
    result = transfer_lib.transfer_audio(model, content, style_log, config, **SMALL)
    whole = transfer_lib.transfer_spectrogram(
        model, spectral_ops.log_magnitude_spectrogram(content, **SMALL), style_log, config)
    waveform, _ = transfer_lib.rebuild_waveform(whole.log_magnitude, content, config, **SMALL)
    assert result.chunks == 1
    np.testing.assert_array_equal(result.waveform, waveform)
    assert result.history == whole.history


def test_a_long_clip_is_transferred_in_chunks_without_seams(model):
    """A steady 4 s tone in chunks of 64 frames: every chunk takes on the style, and the output's loudness does
    not dip or jump at the joins."""
    content = harmonic_tone(4.0, RATE, f0=330.0) * np.exp(3 * np.arange(4 * RATE) / RATE).astype(np.float32)
    style = harmonic_tone(0.8, RATE, f0=150.0, n_harmonics=12)
    config = configs.TransferConfig(steps=10, griffin_lim_iters=30, precision="float32", gram_window=96)
    steps_seen = []
    result = transfer_lib.transfer_audio(model, content, spectral_ops.log_magnitude_spectrogram(style, **SMALL),
                                         config, **SMALL, on_step=lambda done, losses: steps_seen.append(done))
    chunks = transfer_lib.plan_chunks(content.size, config, **SMALL)
    assert result.chunks == len(chunks) >= 3
    assert steps_seen == list(range(1, 10 * len(chunks) + 1))
    assert result.waveform.shape == content.shape and np.all(np.isfinite(result.waveform))
    assert len(result.history) == 11 and result.history[-1]["style_loss"] < result.history[0]["style_loss"]
    assert result.content_panel.shape == result.result_panel.shape == (chunks[-1].end, SMALL["frame_length"] // 2 + 1)
    loudness = spectral_ops.rms(result.waveform, **SMALL).numpy()[4:-4]  # per frame, away from the clip's edges
    assert np.abs(np.diff(np.log(loudness))).max() < 0.1  # a seam would show as a dip or a step


@pytest.mark.parametrize("gram_window", [0, 96], ids=["whole", "chunks"])
def test_griffin_lim_starts_from_the_content_phases(model, gram_window):
    """The result keeps the content's harmonics (style_lifter), so the content's phases are nearly right: from them,
    Griffin-Lim fits the result's magnitudes much better than from random phases in the same iterations."""
    content, style = harmonic_tone(3.0, RATE, f0=220.0), harmonic_tone(0.5, RATE, f0=150.0, n_harmonics=12)
    style_log = spectral_ops.log_magnitude_spectrogram(style, **SMALL)
    fits = {}
    for init in ("content", "random"):
        config = configs.TransferConfig(steps=5, griffin_lim_iters=5, precision="float32", gram_window=gram_window,
                                        griffin_lim_init=init)
        result = transfer_lib.transfer_audio(model, content, style_log, config, **SMALL)
        assert (result.chunks > 1) == (gram_window > 0)
        fits[init] = result.spectral_convergence
    assert fits["content"] < 0.5 * fits["random"]


@pytest.mark.slow
def test_cli_transfers_a_long_clip_in_chunks(tmp_path):
    content, style, output = tmp_path / "content.wav", tmp_path / "style.wav", tmp_path / "out.wav"
    soundfile.write(content, chirp(3.0, RATE, f0=200.0, f1=900.0), RATE)
    soundfile.write(style, harmonic_tone(0.8, RATE), RATE)
    completed = run_transfer(f"--content={content}", f"--style={style}", f"--output={output}", "--steps=3",
                             "--griffin_lim_iters=8", "--gram_window=96", "--frame_length=512", "--frame_step=128")
    assert completed.returncode == 0, completed.stderr
    assert "in 3 chunks of 84" in completed.stderr and "step 9/9" in completed.stderr
    audio, rate = soundfile.read(output)
    assert rate == RATE and audio.size == 3 * RATE
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["chunks"] == 3 and report["loss_end"]["style_loss"] < report["loss_start"]["style_loss"]
