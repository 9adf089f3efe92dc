"""Audio style transfer: put the style of one recording onto the content of another.

    python -m tfstyle.transfer --content=examples/music/content_violin_m06.wav \\
        --style=examples/music/style_piano_m02.wav --output=out/violin_as_piano.wav

writes out/violin_as_piano.wav (as long as the content clip, at its sample rate), .png (content, style and result
spectrograms) and .json (settings, model and weights used, losses at start and end, timings). The optimisation is
tfstyle.transfer_lib; a model that recombines content and style in one pass (conv_vae) needs none.
"""

import dataclasses
import io
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf
from absl import flags

from tfstyle import (audio_io, cli, config_flags, configs, fileutil, loading, progress, registry, spectral_ops,
                     transfer_lib)
from tfstyle.errors import InputError


def _spectrogram_figure(panels: list[tuple[str, np.ndarray]], *, sample_rate: int, frame_step: int) -> bytes:
    """PNG bytes of log-magnitude spectrograms side by side on one colour scale, time in s and frequency in kHz."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    top = max(float(p.max()) for _, p in panels)
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), constrained_layout=True)
    for axis, (title, log_mag) in zip(axes, panels):
        seconds = log_mag.shape[0] * frame_step / sample_rate
        image = axis.imshow(log_mag.T, origin="lower", aspect="auto", cmap="magma", vmin=0.0, vmax=top,
                            extent=(0.0, seconds, 0.0, sample_rate / 2000))
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("time (s)")
        axis.set_ylabel("frequency (kHz)")
    figure.colorbar(image, ax=list(axes), label="log(1 + |STFT|)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()


def _define_flags() -> None:
    # Defined when the module runs as a command, not on import: the commands share flag names, and tests
    # import several of them as libraries. The optimisation's flags come from configs.TransferConfig.
    flags.DEFINE_string("content", None, "Audio file whose content (what is said or played) to keep.")
    flags.DEFINE_string("style", None, "Audio file whose style (voice, timbre, texture) to impose.")
    flags.DEFINE_string("output", None, "Output .wav path; a .png and a .json are written beside it.")
    flags.DEFINE_string("model", registry.DEFAULT_TRANSFER_MODEL, "Zoo model giving the features (see "
                        "tfstyle.list_models()), resolved to its newest shipped SavedModel, or the path of a "
                        "SavedModel version folder.")
    flags.DEFINE_bool("untrained", False, "Use a trainable zoo model with fresh random weights instead of its shipped "
                      "SavedModel (recorded in the JSON).")
    flags.DEFINE_string("model_dir", None, "A training run (python -m tfstyle.train) whose model to use instead of "
                        "--model, at its sample rate and STFT settings.")
    flags.DEFINE_integer("sample_rate", None, "Rate (Hz) of the output, and of the work for a model that takes any "
                         "rate (the random CNN); default: the content file's own rate.")
    flags.DEFINE_integer("frame_length", spectral_ops.FRAME_LENGTH, "STFT window (and FFT) length in samples, for a "
                         "model that takes any STFT (a trained model has its own).")
    flags.DEFINE_integer("frame_step", spectral_ops.FRAME_STEP, "STFT hop in samples, likewise.")
    config_flags.define(configs.TransferConfig, exclude=_NOT_FLAGS)


_NOT_FLAGS = ("explicit_gram",)  # the original formulation, for benchmarks only
FLAGS = flags.FLAGS


def _load_clip(path: str, role: str, *, sample_rate: int | None, frame_length: int) -> tuple[tf.Tensor, int, int]:
    """(waveform at `sample_rate`, or at the file's own rate if None; the file's own rate; its length there)."""
    waveform, file_rate = audio_io.load_audio(path)
    file_length = int(waveform.shape[0])
    if sample_rate is not None and sample_rate != file_rate:
        waveform = audio_io.resample(waveform, rate_in=file_rate, rate_out=sample_rate)
    if waveform.shape[0] < frame_length:
        raise InputError(f"{path}: clip is too short: {waveform.shape[0]} samples at {sample_rate or file_rate} Hz, "
                         f"need at least {frame_length} (one STFT frame)")
    if not bool(tf.reduce_any(waveform != 0.0)):
        raise InputError(f"{path}: the {role} clip is silent (all samples are zero)")
    return waveform, file_rate, file_length


def _resolve_model() -> loading.ResolvedModel:
    """The model of --model_dir (a training run), else of --model and --untrained."""
    if FLAGS.model_dir:
        if FLAGS["model"].present or FLAGS.untrained:
            raise InputError("--model_dir takes the model from the training run: drop --model and --untrained")
        return loading.load_training_run(FLAGS.model_dir)[1]
    return loading.load_model(FLAGS.model, untrained=FLAGS.untrained)


_WEIGHTS = {"shipped": "shipped SavedModel {path}", "saved_model": "SavedModel {path}",
            "training_run": "training run {path}", "built_in": "no trained weights (none needed)",
            "untrained": "UNTRAINED random weights (--untrained)"}


def main(argv: list[str]) -> None:
    del argv  # cli.run has rejected positional arguments
    for name in ("content", "style", "output"):
        if not FLAGS[name].value:
            raise InputError(f"--{name} is required")
    if not FLAGS.output.lower().endswith(".wav"):
        raise InputError(f"--output must be a .wav path, got {FLAGS.output}")
    if FLAGS.frame_step < 1 or FLAGS.frame_length < FLAGS.frame_step:
        raise InputError("need 1 <= --frame_step <= --frame_length")
    cli.check_sample_rate(FLAGS.sample_rate)
    config = config_flags.build(configs.TransferConfig, FLAGS, exclude=_NOT_FLAGS)
    stem = os.path.splitext(FLAGS.output)[0]
    output_paths = {"wav": FLAGS.output, "png": stem + ".png", "json": stem + ".json"}
    for path in output_paths.values():  # before any long work: a run must not fail at its very end
        fileutil.check_writable_output(path)
    resolved = _resolve_model()
    spec, model = resolved.spec, resolved.model
    if spec.transfer == "none":
        raise InputError(spec.no_transfer_reason)
    # A trained model, or any exported one, fixes the STFT it understands; only a trained one fixes the rate.
    signal = model.signal_config() if hasattr(model, "signal_config") else {}
    stft_settings = {name: signal.get(name, FLAGS[name].value) for name in ("frame_length", "frame_step")}
    working_rate = FLAGS.sample_rate if spec.any_sample_rate else signal["sample_rate"]
    timings = {}
    started = clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = round(now - clock, 3)
        clock = now

    content_wave, content_rate, content_length = _load_clip(FLAGS.content, "content", sample_rate=working_rate,
                                                            frame_length=stft_settings["frame_length"])
    working_rate = working_rate or content_rate
    output_rate = FLAGS.sample_rate or content_rate
    output_length = round(content_length * output_rate / content_rate)  # as long as the content clip
    style_wave, _, _ = _load_clip(FLAGS.style, "style", sample_rate=working_rate,
                               frame_length=stft_settings["frame_length"])
    content = spectral_ops.log_magnitude_spectrogram(content_wave, **stft_settings)
    style = spectral_ops.log_magnitude_spectrogram(style_wave, **stft_settings)
    lap("load_s")

    log(f"{resolved.name}, {_WEIGHTS[resolved.source].format(path=resolved.path)}")
    if working_rate != output_rate:
        log(f"working at {working_rate} Hz ({resolved.name}'s rate); the output is resampled to {output_rate} Hz")
    if spec.transfer == "recombine":
        # Content and style pipelines (conv_vae): one forward pass recombines them, nothing to optimise.
        log("recombining the content latent with the style embedding")
        result = transfer_lib.TransferResult(log_magnitude=model.recombine(
            content_wave[tf.newaxis], style_wave[tf.newaxis]).numpy()[0], history=[{}], precision="float32")
        settings = {name: getattr(config, name) for name in ("griffin_lim_iters", "griffin_lim_momentum", "seed")}
        lap("recombine_s")
    else:
        config = dataclasses.replace(config, precision=transfer_lib.resolve_precision(model, config.precision))
        settings = dataclasses.asdict(config)
        chosen = " (auto: faster on this CPU)" if FLAGS.precision == "auto" and config.precision == "bfloat16" else ""
        log(f"{config.optimizer}, {config.steps} steps on {content.shape[0]} frames x {content.shape[1]} bins at "
            f"{working_rate} Hz, {config.precision} matmuls{chosen}")
        report_step = progress.Progress(config.steps)
        result = transfer_lib.transfer_spectrogram(
            model, content, style, config, on_step=lambda done, losses: report_step(done, _losses_text(losses)))
        lap("optimise_s")

    magnitude = spectral_ops.magnitude_from_log(result.log_magnitude)
    waveform = spectral_ops.griffin_lim(magnitude, n_iter=config.griffin_lim_iters, length=int(content_wave.shape[0]),
                                        momentum=config.griffin_lim_momentum, seed=config.seed, **stft_settings)
    convergence = float(spectral_ops.spectral_convergence(magnitude, waveform, **stft_settings))
    if working_rate != output_rate:
        waveform = audio_io.resample(waveform, rate_in=working_rate, rate_out=output_rate)
    # Resampling can leave a sample more or less than the content clip has at the output rate.
    waveform = tf.pad(waveform[:output_length], [[0, max(0, output_length - int(waveform.shape[0]))]])
    peak = float(tf.reduce_max(tf.abs(waveform)))
    gain = 1.0
    if peak > 0.99:  # keep the loudest sample inside 16-bit range rather than clipping it
        gain = 0.99 / peak
        waveform = waveform * gain
        log(f"the result peaked at {peak:.2f} of full scale: scaled by {gain:.3f} so that it does not clip")
    lap("griffin_lim_s")

    report = {
        "content": FLAGS.content,
        "style": FLAGS.style,
        "output": FLAGS.output,
        "model": resolved.name,
        "weights": resolved.source,
        "model_path": resolved.path,
        "sample_rate": output_rate,
        "working_sample_rate": working_rate,
        "stft": stft_settings,
        "duration_s": round(output_length / output_rate, 3),
        "settings": settings,
        "precision": result.precision,
        "loss_start": result.history[0],
        "loss_end": result.history[-1],
        "loss_output": result.output_losses,
        "griffin_lim_spectral_convergence": convergence,
        "output_gain": round(gain, 4),
        "timings": timings,
    }
    figure = _spectrogram_figure(
        [(f"content: {os.path.basename(FLAGS.content)}", content.numpy()),
         (f"style: {os.path.basename(FLAGS.style)}", style.numpy()),
         (f"result: {os.path.basename(FLAGS.output)}", result.log_magnitude)],
        sample_rate=working_rate,
        frame_step=stft_settings["frame_step"],
    )
    lap("figure_s")
    timings["total_s"] = round(time.perf_counter() - started, 3)
    fileutil.write_files_atomically({
        output_paths["wav"]: audio_io.encode_wav(waveform, output_rate),
        output_paths["png"]: figure,
        output_paths["json"]: json.dumps(report, indent=2).encode(),
    })
    message = f"wrote {FLAGS.output} (+ .png, .json) in {timings['total_s']:.1f} s"
    if result.history[-1]:
        start, end = result.history[0]["style_loss"], result.history[-1]["style_loss"]
        message += (f"; final {_losses_text(result.history[-1])}; style loss {start:.4g} -> {end:.4g} "
                    f"({start / max(end, 1e-12):.1f}x lower); precision {result.precision}")
        if result.output_losses != result.history[-1]:
            message += (f"; the output, with the content's harmonics and loudness kept: "
                        f"{_losses_text(result.output_losses)}")
    log(message)


def log(line: str) -> None:
    print(f"tfstyle: {line}", file=sys.stderr)


def _losses_text(losses: dict[str, float]) -> str:
    return (f"loss {losses['total_loss']:.4g} (style {losses['style_loss']:.4g}, "
            f"content {losses['content_loss']:.4g})")


def run(argv: list[str] | None = None) -> None:
    _define_flags()
    cli.run(main, argv)


if __name__ == "__main__":
    run()
