import dataclasses
import io
import json
import os
import re
import sys

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from tfstyle import configs, losses, progress, registry, spectral_ops, transfer_lib
from tfstyle.errors import InputError
from conftest import SAMPLE_RATE, TINY_RATE, assert_one_line_usage_error, chirp, harmonic_tone, run_command, run_transfer

SMALL = dict(frame_length=512, frame_step=128)


def log_magnitude(x):
    return spectral_ops.log_magnitude(spectral_ops.stft_magnitude(x, **SMALL))


@pytest.fixture(scope="module")
def problem():
    model = registry.build_model("random_cnn", n_filters=64, kernel_width=5)
    return model, log_magnitude(chirp(0.5)), log_magnitude(harmonic_tone(0.4))


def test_transfer_moves_the_style_loss_down(problem):
    model, content, style = problem
    result = transfer_lib.transfer_spectrogram(model, content, style, configs.TransferConfig(steps=30))
    assert result.log_magnitude.shape == content.shape
    assert len(result.history) == 31
    assert result.history[0]["content_loss"] == 0.0  # starts from the content
    assert result.history[-1]["style_loss"] < result.history[0]["style_loss"] / 3
    ceiling = max(float(tf.reduce_max(content)), float(tf.reduce_max(style)))
    assert result.log_magnitude.min() >= 0.0 and result.log_magnitude.max() <= ceiling + 1e-6


def test_content_weight_keeps_the_result_nearer_the_content(problem):
    model, content, style = problem
    style_only = transfer_lib.transfer_spectrogram(model, content, style, configs.TransferConfig(steps=30))
    with_content = transfer_lib.transfer_spectrogram(
        model, content, style, configs.TransferConfig(steps=30, content_weight=5.0)
    )
    assert with_content.history[-1]["content_loss"] < style_only.history[-1]["content_loss"]


def test_noise_init_time_frequency_gram_and_penalties_run(problem):
    model, content, style = problem
    config = configs.TransferConfig(steps=20, init="noise", content_weight=1.0, gram_over="time_frequency",
                                    tv_weight=0.1, l2_weight=0.1)
    result = transfer_lib.transfer_spectrogram(model, content, style, config)
    assert result.history[0]["content_loss"] > 0.1
    assert result.history[-1]["total_loss"] < result.history[0]["total_loss"]


def test_step_callback_and_unknown_layers(problem):
    model, content, style = problem
    seen = []
    transfer_lib.transfer_spectrogram(model, content, style, configs.TransferConfig(steps=3),
                                  on_step=lambda done, losses: seen.append(done))
    assert seen == [1, 2, 3]
    with pytest.raises(InputError, match="unknown style layer.*the model has: conv"):
        transfer_lib.transfer_spectrogram(model, content, style,
                                      configs.TransferConfig(steps=1, style_layers=(("conv9", 1.0),)))


@pytest.mark.slow
def test_cli_writes_wav_png_and_json(content_wav, style_wav, tmp_path):
    output = tmp_path / "result.wav"
    completed = run_transfer(f"--content={content_wav}", f"--style={style_wav}", f"--output={output}",
                             "--steps=4", "--griffin_lim_iters=8")
    assert completed.returncode == 0, completed.stderr
    assert "step 4/4" in completed.stderr  # progress
    audio, rate = soundfile.read(output)
    assert rate == SAMPLE_RATE and len(audio) == SAMPLE_RATE  # as long as the content
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() > 0.01
    assert (tmp_path / "result.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "result.json").read_text())
    assert report["settings"]["steps"] == 4 and report["sample_rate"] == SAMPLE_RATE
    assert report["loss_end"]["style_loss"] < report["loss_start"]["style_loss"]
    assert {"load_s", "transfer_s", "finish_s", "figure_s", "total_s"} <= set(report["timings"])
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(output).st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600


@pytest.mark.slow
def test_cli_mixes_down_stereo_and_resamples(style_wav, tmp_path):
    stereo = tmp_path / "stereo.flac"
    soundfile.write(stereo, np.stack([chirp(0.5), harmonic_tone(0.5)], axis=1), SAMPLE_RATE)
    output = tmp_path / "out.wav"
    completed = run_transfer(f"--content={stereo}", f"--style={style_wav}", f"--output={output}", "--steps=2",
                             "--sample_rate=8000", "--griffin_lim_iters=2")
    assert completed.returncode == 0, completed.stderr
    audio, rate = soundfile.read(output)
    assert rate == 8000 and len(audio) == 4000 and np.all(np.isfinite(audio))


def _write(name, samples, **options):
    def make(folder):
        soundfile.write(folder / name, samples, SAMPLE_RATE, **options)
        return str(folder / name)
    return make


def _raw(name, data):
    def make(folder):
        (folder / name).write_bytes(data)
        return str(folder / name)
    return make


def _truncated(folder):
    soundfile.write(folder / "whole.wav", chirp(0.5), SAMPLE_RATE)
    (folder / "truncated.wav").write_bytes((folder / "whole.wav").read_bytes()[:40])
    return str(folder / "truncated.wav")


BAD_CONTENT = {
    "missing": (lambda folder: str(folder / "missing.wav"), "no such file"),
    "empty": (_raw("empty.wav", b""), "file is empty"),
    "truncated": (_truncated, "not a readable WAV file"),
    "corrupt": (_raw("corrupt.wav", b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4), "not a readable WAV"),
    "text_renamed": (_raw("notes.wav", b"these are my notes, not audio\n" * 50), "not a readable WAV"),
    "corrupt_mp3": (_raw("song.mp3", bytes(range(256)) * 8), "not a readable MP3"),
    "too_short": (_write("short.wav", chirp(0.05)), "too short"),
    "silent": (_write("silent.wav", np.zeros(SAMPLE_RATE // 2, np.float32)), "silent"),
    "nan": (_write("nan.wav", np.full(SAMPLE_RATE // 2, np.nan, np.float32), subtype="FLOAT"), "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONTENT))
@pytest.mark.slow
def test_cli_bad_content_file(case, style_wav, tmp_path):
    make, message = BAD_CONTENT[case]
    content = make(tmp_path)
    output = tmp_path / "out.wav"
    completed = run_transfer(f"--content={content}", f"--style={style_wav}", f"--output={output}", "--steps=2")
    assert_one_line_usage_error(completed, message)
    assert content in completed.stderr or case == "missing"
    assert not output.exists()


@pytest.mark.slow
def test_cli_silent_style(content_wav, tmp_path):
    style = _write("quiet.wav", np.zeros(SAMPLE_RATE // 2, np.float32))(tmp_path)
    completed = run_transfer(f"--content={content_wav}", f"--style={style}", f"--output={tmp_path / 'o.wav'}")
    assert_one_line_usage_error(completed, "the style clip is silent")


@pytest.mark.parametrize("flags, message", [
    (["--model=vgg19"], "unknown model 'vgg19'; known models: content_encoder, conv_ae, "),
    (["--steps=0"], "steps must be a positive integer"),
    (["--steps=-3"], "steps must be a positive integer"),
    (["--steps=many"], "--steps"),
    (["--gram_window=-1"], "gram_window must be a whole number of frames >= 0"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["--output=/no/such/folder/out.wav"], "output folder does not exist: /no/such/folder"),
    (["--output=/proc/out.wav"], "output folder is not writable: /proc"),
    (["--output=result.mp3"], "--output must be a .wav path"),
    (["--style_layers=conv:heavy"], "--style_layers: 'conv:heavy' is not name:weight"),
    (["stray_argument"], "unexpected arguments: stray_argument"),
])
@pytest.mark.slow
def test_cli_bad_flags(flags, message, content_wav, style_wav, tmp_path):
    completed = run_transfer(f"--content={content_wav}", f"--style={style_wav}",
                             f"--output={tmp_path / 'out.wav'}", *flags)
    assert_one_line_usage_error(completed, message)
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.slow
def test_cli_failure_leaves_an_earlier_result_untouched(content_wav, tmp_path):
    output = tmp_path / "out.wav"
    output.write_bytes(b"earlier result")
    completed = run_transfer(f"--content={content_wav}", f"--style={tmp_path / 'gone.wav'}", f"--output={output}")
    assert completed.returncode == 2
    assert output.read_bytes() == b"earlier result"
    assert sorted(os.listdir(tmp_path)) == ["content.wav", "out.wav"]


@pytest.mark.slow
def test_console_script_matches_module(content_wav, tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "tfstyle")
    completed = run_command([script, "transfer", f"--content={content_wav}", f"--style={tmp_path / 'x.wav'}",
                             f"--output={tmp_path / 'o.wav'}"])
    assert_one_line_usage_error(completed, "x.wav: no such file")
    assert_one_line_usage_error(run_command([script, "transfrom"]), "unknown command 'transfrom'")


def test_bfloat16_path_matches_the_float32_path(problem):
    model, content, style = problem
    results = {precision: transfer_lib.transfer_spectrogram(
        model, content, style, configs.TransferConfig(steps=20, precision=precision)) for precision in
        ("float32", "bfloat16")}
    float32, bfloat16 = (results[p].history for p in ("float32", "bfloat16"))
    assert bfloat16[-1]["style_loss"] == pytest.approx(float32[-1]["style_loss"], rel=0.05)
    assert bfloat16[0]["style_loss"] != float32[0]["style_loss"]  # it really ran in another precision


def test_lbfgs_lowers_the_loss_within_bounds(problem):
    model, content, style = problem
    config = configs.TransferConfig(steps=15, optimizer="lbfgs", precision="float32")
    result = transfer_lib.transfer_spectrogram(model, content, style, config)
    assert 2 <= len(result.history) <= 16
    assert result.history[0]["style_loss"] == pytest.approx(
        transfer_lib.transfer_spectrogram(model, content, style, configs.TransferConfig(steps=1, precision="float32"))
        .history[0]["style_loss"], rel=1e-5)
    assert result.history[-1]["style_loss"] < result.history[0]["style_loss"] / 3
    ceiling = max(float(tf.reduce_max(content)), float(tf.reduce_max(style)))
    assert result.log_magnitude.min() >= 0.0 and result.log_magnitude.max() <= ceiling + 1e-5


def test_windowed_style_matching_styles_every_window(problem):
    """With windows, each part of the clip must take on the style, not just the clip on average."""
    model, content, style = problem
    frames = content.shape[0]
    result = transfer_lib.transfer_spectrogram(model, content, style, configs.TransferConfig(
        steps=30, gram_window=frames // 3, precision="float32", style_lifter=0, keep_loudness=False))
    assert result.history[-1]["style_loss"] < result.history[0]["style_loss"] / 3
    target = losses.StyleTarget(model.features(style[tf.newaxis])["conv"])
    for part in np.array_split(np.arange(frames), 3):
        before, after = (float(losses.style_loss(model.features(x[tf.newaxis, part[0]:part[-1] + 1])["conv"], target))
                         for x in (content, result.log_magnitude))
        assert after < before / 2


@pytest.mark.parametrize("explicit_gram", [False, True])
def test_lbfgs_finishes_in_float32_when_its_bfloat16_line_search_stalls(problem, explicit_gram):
    """bfloat16 losses are good to a few digits; L-BFGS must not end early when its line search runs out."""
    model, content, style = problem
    result = transfer_lib.transfer_spectrogram(model, content, style, configs.TransferConfig(
        steps=100, optimizer="lbfgs", precision="bfloat16", explicit_gram=explicit_gram))
    assert len(result.history) == 101  # every iteration asked for was run
    switch = re.fullmatch(r"bfloat16; float32 from iteration (\d+)", result.precision)
    assert switch, result.precision  # this problem stalls near iteration 50
    switched = int(switch.group(1))
    assert result.history[-1]["style_loss"] < 0.8 * result.history[switched]["style_loss"]  # and kept going down


def test_transfer_leaves_the_models_precision_as_it_found_it(problem):
    model, content, style = problem
    assert not model.uses_bfloat16_matmuls
    transfer_lib.transfer_spectrogram(model, content, style, configs.TransferConfig(steps=1, precision="bfloat16"))
    assert not model.uses_bfloat16_matmuls


def test_history_holds_the_losses_after_each_step(problem):
    """history[k] is the loss after k steps: a fresh run of k steps ends where the longer run passed through."""
    model, content, style = problem
    seen = {}
    config = configs.TransferConfig(steps=4, precision="float32")
    result = transfer_lib.transfer_spectrogram(model, content, style, config,
                                               on_step=lambda done, losses: seen.setdefault(done, losses))
    assert [seen[k] for k in range(1, 5)] == result.history[1:]
    halfway = dataclasses.replace(config, steps=2, learning_rate_decay=0.1 ** 0.5)  # the same learning rates
    shorter = transfer_lib.transfer_spectrogram(model, content, style, halfway)
    assert shorter.history[-1]["style_loss"] == pytest.approx(result.history[2]["style_loss"], rel=1e-4)


def test_progress_estimates_from_steps_after_the_first():
    class Stream(io.StringIO):
        def isatty(self):
            return False

    stream = Stream()
    report = progress.Progress(5, stream=stream)
    for done in range(1, 6):
        report(done, "ok")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5 and "left" not in lines[0] and "left" not in lines[-1]
    assert all("s left" in line for line in lines[1:-1])


@pytest.mark.slow
def test_cli_console_shows_precision_and_its_last_line_equals_the_json(content_wav, style_wav, tmp_path):
    output = tmp_path / "out.wav"
    completed = run_transfer(f"--content={content_wav}", f"--style={style_wav}", f"--output={output}",
                             "--steps=3", "--griffin_lim_iters=2", "--precision=float32")
    assert completed.returncode == 0, completed.stderr
    report = json.loads(output.with_suffix(".json").read_text())
    assert "float32 matmuls" in completed.stderr and report["precision"] == "float32"
    last_step = [line for line in completed.stderr.splitlines() if line.startswith("step 3/3")][0]
    end = report["loss_end"]
    assert f"loss {end['total_loss']:.4g} (style {end['style_loss']:.4g}, content {end['content_loss']:.4g})" in (
        last_step)
    assert report["weights"] == "built_in" and report["output_gain"] <= 1.0


@pytest.mark.parametrize("flag", ["--help", "-h", "--helpfull"])
@pytest.mark.slow
def test_help_exits_zero_with_usage_and_description(flag):
    completed = run_command([sys.executable, "-m", "tfstyle.transfer", flag])
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: python -m tfstyle.transfer")
    assert "put the style of one recording" in completed.stdout and "--content:" in completed.stdout


@pytest.mark.slow
def test_console_script_help():
    script = os.path.join(os.path.dirname(sys.executable), "tfstyle")
    completed = run_command([script, "--help"])
    assert completed.returncode == 0 and "transfer" in completed.stdout and "evaluate" in completed.stdout
    for command in ("transfer", "train", "export", "evaluate"):
        completed = run_command([script, command, "--help"])
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.startswith(f"usage: tfstyle {command} ") and "flags:\n  --" in completed.stdout
    assert run_command([script]).returncode == 2


@pytest.mark.slow
def test_cli_finds_an_unwritable_side_output_before_any_work(content_wav, style_wav, tmp_path):
    (tmp_path / "out.png").mkdir()  # the figure's path is taken by a folder
    completed = run_transfer(f"--content={content_wav}", f"--style={style_wav}", f"--output={tmp_path / 'out.wav'}")
    assert_one_line_usage_error(completed, "output path is a folder, not a file")
    assert "step 1/" not in completed.stderr and not (tmp_path / "out.wav").exists()


@pytest.mark.slow
def test_cli_untrained_weights_only_when_asked_and_recorded(content_wav, style_wav, tmp_path):
    output = tmp_path / "out.wav"
    completed = run_transfer(f"--content={content_wav}", f"--style={style_wav}", f"--output={output}",
                             "--model=seq2seq_lstm_ae", "--untrained", "--steps=1", "--griffin_lim_iters=1")
    assert completed.returncode == 0, completed.stderr
    assert "UNTRAINED" in completed.stderr
    assert json.loads(output.with_suffix(".json").read_text())["weights"] == "untrained"
    missing = run_command([sys.executable, "-m", "tfstyle.transfer", f"--content={content_wav}",
                           f"--style={style_wav}", f"--output={output}", "--model=conv_ae"],
                          env_overrides={"TFSTYLE_SAVED_MODELS": str(tmp_path)})
    assert_one_line_usage_error(missing, "no shipped SavedModel for conv_ae")


@pytest.mark.slow
def test_cli_style_encoder_refuses_in_one_line(content_wav, style_wav, tmp_path):
    completed = run_transfer(f"--content={content_wav}", f"--style={style_wav}", f"--output={tmp_path / 'o.wav'}",
                             "--model=style_encoder")
    assert_one_line_usage_error(completed, "style_encoder maps a whole clip to one")


def test_envelope_change_keeps_the_contents_harmonics():
    """A change of the envelope (a tilt) passes; a change of the harmonic comb (another pitch) is undone."""
    bins = np.arange(257)
    comb = lambda period: 1.0 + 0.5 * np.cos(2 * np.pi * bins / period)  # noqa: E731  (harmonics every `period` bins)
    content = tf.constant(np.stack([comb(8.0)] * 3), tf.float32)
    tilt = tf.constant(np.linspace(0.0, 1.0, 257)[np.newaxis], tf.float32)
    kept = transfer_lib.keep_envelope_change(content + tilt, content, lifter=20)
    np.testing.assert_allclose(kept - content, np.broadcast_to(tilt, kept.shape), atol=0.05)
    other_pitch = tf.constant(np.stack([comb(5.0)] * 3), tf.float32)
    undone = transfer_lib.keep_envelope_change(other_pitch, content, lifter=20)
    assert float(tf.reduce_max(tf.abs(undone - content))) < 0.1
    assert float(tf.reduce_max(tf.abs(other_pitch - content))) > 0.5


def test_frame_loudness_follows_the_content_pauses_included():
    content = tf.constant([[2.0, 1.0, 0.5], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    filled = tf.constant([[1.0, 1.0, 1.0], [1.0, 0.5, 0.2], [3.0, 0.1, 0.1]])  # the pause is filled in
    matched = transfer_lib.match_frame_loudness(filled, content)
    norms = lambda x: tf.norm(tf.math.expm1(x), axis=-1).numpy()  # noqa: E731
    np.testing.assert_allclose(norms(matched), norms(content), rtol=1e-5, atol=1e-6)
    shape = lambda x: (tf.math.expm1(x) / tf.norm(tf.math.expm1(x), axis=-1, keepdims=True)).numpy()  # noqa: E731
    np.testing.assert_allclose(shape(matched)[[0, 2]], shape(filled)[[0, 2]], rtol=1e-4)  # spectral shape stays


def test_output_losses_are_those_of_the_returned_spectrogram(problem):
    model, content, style = problem
    result = transfer_lib.transfer_spectrogram(model, content, style, configs.TransferConfig(steps=5))
    plain = transfer_lib.transfer_spectrogram(model, content, style, configs.TransferConfig(
        steps=5, style_lifter=0, keep_loudness=False, precision="float32"))
    assert result.output_losses != result.history[-1]
    assert plain.output_losses["style_loss"] == pytest.approx(plain.history[-1]["style_loss"], rel=1e-4)


@pytest.mark.slow
def test_help_into_a_closed_pipe_is_no_error():
    """`tfstyle transfer --help | head -1`: the reader leaves early; no traceback, exit 0."""
    import subprocess

    process = subprocess.Popen([sys.executable, "-m", "tfstyle.transfer", "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    process.stdout.close()  # before the command has started writing (its imports take a second or more)
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 0 and "Traceback" not in stderr, stderr


def test_a_content_model_carries_the_content_loss(problem):
    """--content_model: the style loss stays the model's, the content loss goes through the other model's layers."""
    model, content, style = problem
    content_model = registry.build_model("content_encoder", sample_rate=SAMPLE_RATE, **SMALL, projection=8,
                                         channels=8, content_dim=4)
    config = configs.TransferConfig(steps=30, init="noise", style_weight=0.0, content_weight=1.0)
    result = transfer_lib.transfer_spectrogram(model, content, style, config, content_model=content_model)
    assert result.history[-1]["content_loss"] < result.history[0]["content_loss"] / 2
    from_content = transfer_lib.transfer_spectrogram(model, content, style, dataclasses.replace(config, init="content"),
                                                     content_model=content_model)
    assert from_content.history[0]["content_loss"] < 1e-9 and from_content.history[0]["style_loss"] > 0
    with pytest.raises(InputError, match="unknown content layer.*the model has: content"):
        transfer_lib.transfer_spectrogram(model, content, style, dataclasses.replace(config, content_layers=(
            ("conv", 1.0),)), content_model=content_model)


@pytest.mark.slow
def test_cli_content_model_runs_at_its_signal_and_is_recorded(exported, tmp_path):
    _, path = exported["content_encoder"]
    rate = TINY_RATE  # the tiny export's signal: 256-point STFT, hop 64
    content, style = tmp_path / "c.wav", tmp_path / "s.wav"
    soundfile.write(content, chirp(0.6, rate), rate)
    soundfile.write(style, harmonic_tone(0.5, rate), rate)
    output = tmp_path / "out.wav"
    common = [f"--content={content}", f"--style={style}", f"--output={output}", f"--content_model={path}"]
    assert_one_line_usage_error(run_transfer(*common), "give --content_weight > 0")
    completed = run_transfer(*common, "--content_weight=1", "--steps=2", "--griffin_lim_iters=1")
    assert completed.returncode == 0, completed.stderr
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["content_model"] == "content_encoder" and report["stft"]["frame_length"] == 256
    assert report["loss_end"]["content_loss"] > 0
