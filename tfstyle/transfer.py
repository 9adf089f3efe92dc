"""Audio style transfer: put the style of one recording onto the content of another.

    python -m tfstyle.transfer --content=examples/music/content_violin_m06.wav \\
        --style=examples/music/style_piano_m02.wav --output=out/violin_as_piano.wav

writes out/violin_as_piano.wav (as long as the content clip, at its sample rate), .png (content, style and result
spectrograms) and .json (settings, model and weights used, losses at start and end, timings). Two speech clips go
through tfstyle.source_filter's voice conversion by default (`choose_method`); anything else through the Gram
optimisation of tfstyle.transfer_lib; a model that recombines content and style in one pass (conv_vae) needs none.
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

from tfstyle import (audio_io, chunking, cli, config_flags, configs, fileutil, loading, progress, registry,
                     source_filter, spectral_ops, transfer_lib)
from tfstyle.errors import InputError


def _spectrogram_figure(panels: list[tuple[str, np.ndarray, float]], *, sample_rate: int) -> bytes:
    """PNG bytes of log-magnitude spectrograms (title, [columns, bins], seconds they span) side by side on one colour
    scale, time in s and frequency in kHz."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    top = max(float(p.max()) for _, p, _ in panels)
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), constrained_layout=True)
    for axis, (title, log_mag, seconds) in zip(axes, panels):
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
    flags.DEFINE_string("pairs", None, "Instead of --content/--style/--output: a CSV with the columns "
                        "content,style,output (output: a .wav name), run as an Apache Beam pipeline (needs "
                        "tfstyle[beam]); other flags that are not tfstyle's go to Beam as pipeline options.")
    flags.DEFINE_string("output_dir", None, "With --pairs: the folder the outputs go to; pairs whose outputs "
                        "exist are skipped, and failed.tsv lists those that failed, with the reason.")
    flags.DEFINE_string("model", registry.DEFAULT_TRANSFER_MODEL, "Zoo model giving the features (see "
                        "tfstyle.list_models()), resolved to its newest shipped SavedModel, or the path of a "
                        "SavedModel version folder.")
    flags.DEFINE_string("content_model", "", "A second zoo model (or SavedModel path) whose content layers the "
                        "content loss uses instead of --model's, e.g. content_encoder (features that follow the words, "
                        "not the voice); needs --content_weight > 0. The work runs at its rate and STFT.")
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


def resolve_model(model: str, *, untrained: bool, model_dir: str | None) -> loading.ResolvedModel:
    """The model of `model_dir` (a training run), else of `model` and `untrained`."""
    if model_dir:
        return loading.load_training_run(model_dir)[1]
    return loading.load_model(model, untrained=untrained)


_WEIGHTS = {"shipped": "shipped SavedModel {path}", "saved_model": "SavedModel {path}",
            "training_run": "training run {path}", "built_in": "no trained weights (none needed)",
            "untrained": "UNTRAINED random weights (--untrained)"}


def main(argv: list[str]) -> None:
    if FLAGS.model_dir and (FLAGS["model"].present or FLAGS.untrained):
        raise InputError("--model_dir takes the model from the training run: drop --model and --untrained")
    check_settings()
    config = config_flags.build(configs.TransferConfig, FLAGS, exclude=_NOT_FLAGS)
    if FLAGS.pairs or FLAGS.output_dir:
        _transfer_pairs(config, beam_args=argv[1:])
        return
    if len(argv) > 1:
        raise InputError(f"unknown flag {argv[1].split('=', 1)[0]} (Beam pipeline options go with --pairs)")
    for name in ("content", "style", "output"):
        if not FLAGS[name].value:
            raise InputError(f"--{name} is required")
    for path in output_paths(FLAGS.output).values():  # before any long work: a run must not fail at its very end
        fileutil.check_writable_output(path)
    resolved = resolve_model(FLAGS.model, untrained=FLAGS.untrained, model_dir=FLAGS.model_dir)
    transfer_file(FLAGS.content, FLAGS.style, FLAGS.output, resolved=resolved, config=config,
                  content_resolved=resolve_content_model(FLAGS.content_model, config), **signal_flags())


def _transfer_pairs(config: configs.TransferConfig, *, beam_args: list[str]) -> None:
    if not (FLAGS.pairs and FLAGS.output_dir):
        raise InputError("--pairs and --output_dir go together")
    given = [name for name in ("content", "style", "output") if FLAGS[name].value]
    if given:
        raise InputError(f"--pairs takes the files from its CSV: drop --{', --'.join(given)}")
    pipelines = cli.beam_pipelines()
    pipelines.pipeline_options(beam_args)  # an unknown flag fails here, before any work
    pairs = pipelines.read_pairs(FLAGS.pairs)
    todo = [pair for pair in pairs if not all(
        os.path.exists(path) for path in output_paths(os.path.join(FLAGS.output_dir, pair.output)).values())]
    log(f"{len(pairs)} pairs in {FLAGS.pairs}: {len(pairs) - len(todo)} done already, {len(todo)} to run")
    if not todo:
        return
    transfer = PairTransfer(FLAGS.model, FLAGS.untrained, FLAGS.model_dir, config, signal_flags(), FLAGS.content_model)
    resolve_model(FLAGS.model, untrained=FLAGS.untrained, model_dir=FLAGS.model_dir)  # a bad model fails here
    resolve_content_model(FLAGS.content_model, config)
    summary = pipelines.transfer_pairs(todo, output_dir=FLAGS.output_dir, transfer=transfer, beam_args=beam_args)
    log(f"{summary.written} of {len(todo)} pairs written to {FLAGS.output_dir}")
    if summary.failed:
        for line in summary.failed:
            log(f"failed: {line}")
        raise InputError(f"{len(summary.failed)} of {len(todo)} pairs failed (listed in "
                         f"{os.path.join(FLAGS.output_dir, pipelines.FAILED_FILE)}); rerun to retry only those")


@dataclasses.dataclass
class PairTransfer:
    """One transfer of a pairs CSV, as Beam's workers run it: picklable, loading its model once per worker."""

    model: str
    untrained: bool
    model_dir: str | None
    config: configs.TransferConfig
    signal: dict
    content_model: str = ""
    _resolved: tuple | None = dataclasses.field(default=None, repr=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_resolved": None}  # each worker loads its own

    def __call__(self, pair, output_path: str) -> None:
        if self._resolved is None:
            self._resolved = (resolve_model(self.model, untrained=self.untrained, model_dir=self.model_dir),
                              resolve_content_model(self.content_model, self.config))
        fileutil.check_writable_output(output_path)
        transfer_file(pair.content, pair.style, output_path, resolved=self._resolved[0], config=self.config,
                      content_resolved=self._resolved[1], show_steps=False, **self.signal)


def resolve_content_model(name: str, config: configs.TransferConfig) -> loading.ResolvedModel | None:
    """The --content_model (None if not given); InputError if it cannot serve as one."""
    if not name:
        return None
    if not config.content_weight > 0:
        raise InputError("--content_model is used by the content loss: give --content_weight > 0 as well")
    resolved = loading.load_model(name)
    if not hasattr(resolved.model, "signal_config"):
        raise InputError(f"--content_model={name} works at any rate and STFT; give a trained model (e.g. "
                         "content_encoder), or use --content_layers of --model")
    return resolved


def check_settings() -> None:
    """The flags' checks that need no file (InputError if one fails)."""
    if FLAGS.output and not FLAGS.output.lower().endswith(".wav"):
        raise InputError(f"--output must be a .wav path, got {FLAGS.output}")
    if FLAGS.frame_step < 1 or FLAGS.frame_length < FLAGS.frame_step:
        raise InputError("need 1 <= --frame_step <= --frame_length")
    cli.check_sample_rate(FLAGS.sample_rate)


def signal_flags() -> dict:
    """The rate and STFT flags, as `transfer_file` takes them."""
    return {name: FLAGS[name].value for name in ("sample_rate", "frame_length", "frame_step")}


def output_paths(wav_path: str) -> dict[str, str]:
    """The three files a transfer writes: {"wav", "png", "json"}."""
    stem = os.path.splitext(wav_path)[0]
    return {"wav": wav_path, "png": stem + ".png", "json": stem + ".json"}


def transfer_file(content_path: str, style_path: str, output_path: str, *, resolved: loading.ResolvedModel,
                  config: configs.TransferConfig, sample_rate: int | None, frame_length: int, frame_step: int,
                  content_resolved: loading.ResolvedModel | None = None, show_steps: bool = True) -> dict:
    """One transfer, files to files: writes the .wav, .png and .json of `output_paths(output_path)` together
    (nothing if it fails) and returns the JSON report.

    Args:
        content_path, style_path: audio files.
        output_path: the .wav to write.
        resolved: the model (see `resolve_model`).
        config: the optimisation's settings.
        sample_rate: the output's rate (and the work's, for a model that takes any rate); None: the content's.
        frame_length, frame_step: the STFT, for a model that takes any (an exported one has its own).
        content_resolved: a model whose content layers the content loss uses (see `resolve_content_model`).
        show_steps: report progress step by step (off where many transfers run side by side).

    Raises:
        InputError: a file cannot be read or written, or the model cannot do a transfer.
    """
    spec, model = resolved.spec, resolved.model
    if spec.transfer == "none":
        raise InputError(spec.no_transfer_reason)
    paths = output_paths(output_path)
    # A trained model, or any exported one, fixes the STFT it understands; only a trained one fixes the rate.
    signal = model.signal_config() if hasattr(model, "signal_config") else {}
    content_model = None
    if content_resolved is not None:
        if spec.transfer != "gradient":
            raise InputError(f"--content_model: {resolved.name} does not optimise a spectrogram, so it has no "
                             "content loss")
        content_model = content_resolved.model
        content_signal = content_model.signal_config()
        if signal and signal != content_signal:
            raise InputError(f"{resolved.name} works at {signal} and --content_model {content_resolved.name} at "
                             f"{content_signal}; they must agree")
        signal = content_signal
    stft_settings = {"frame_length": signal.get("frame_length", frame_length),
                     "frame_step": signal.get("frame_step", frame_step)}
    working_rate = sample_rate if spec.any_sample_rate and content_model is None else signal["sample_rate"]
    timings = {}
    started = clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = round(now - clock, 3)
        clock = now

    content_wave, content_rate, content_length = _load_clip(content_path, "content", sample_rate=working_rate,
                                                            frame_length=stft_settings["frame_length"])
    working_rate = working_rate or content_rate
    output_rate = sample_rate or content_rate
    output_length = round(content_length * output_rate / content_rate)  # as long as the content clip
    style_wave, _, _ = _load_clip(style_path, "style", sample_rate=working_rate,
                               frame_length=stft_settings["frame_length"])
    style = spectral_ops.log_magnitude_spectrogram(style_wave, **stft_settings)
    lap("load_s")

    log(f"{resolved.name}, {_WEIGHTS[resolved.source].format(path=resolved.path)}")
    if content_resolved is not None:
        log(f"content loss through {content_resolved.name}, "
            f"{_WEIGHTS[content_resolved.source].format(path=content_resolved.path)}")
    if working_rate != output_rate:
        rate_owner = content_resolved.name if content_model is not None else resolved.name
        log(f"working at {working_rate} Hz ({rate_owner}'s rate); the output is resampled to {output_rate} Hz")
    model_asked = (resolved.name != registry.DEFAULT_TRANSFER_MODEL or resolved.source != "built_in"
                   or content_resolved is not None)
    method = choose_method(config.method, spec, content_wave, style_wave, working_rate, model_asked=model_asked)
    conversion = None
    if method == "source_filter":
        instrument = not source_filter.sounds_like_speech(content_wave, working_rate)
        if instrument:
            log("source-filter conversion of a melody: the notes kept, each note's harmonics and noise as the style's"
                " instrument plays that pitch")
        else:
            log("source-filter conversion: pitch range, vocal-tract length and spectral envelope moved to the style's"
                + (" (both clips sound like speech; --method=gram for the Gram optimisation)"
                   if config.method == "auto" else ""))
        waveform, conversion = source_filter.transfer(content_wave, style_wave, working_rate, seed=config.seed,
                                                      instrument=instrument)
        settings = {"method": method, "seed": config.seed}
        result = transfer_lib.AudioTransferResult(
            waveform=waveform, history=[{}], output_losses={}, precision="float32", chunks=1,
            spectral_convergence=None,
            content_panel=chunking.pool_columns(
                spectral_ops.log_magnitude_spectrogram(content_wave, **stft_settings).numpy()),
            result_panel=chunking.pool_columns(
                spectral_ops.log_magnitude_spectrogram(waveform, **stft_settings).numpy()))
        lap("transfer_s")
    elif spec.transfer == "recombine":
        # Content and style pipelines (conv_vae): one forward pass recombines them, nothing to optimise.
        method = "recombine"
        log("recombining the content latent with the style embedding")
        content = spectral_ops.log_magnitude_spectrogram(content_wave, **stft_settings)
        log_magnitude = model.recombine(content_wave[tf.newaxis], style_wave[tf.newaxis]).numpy()[0]
        settings = {name: getattr(config, name)
                    for name in ("griffin_lim_iters", "griffin_lim_momentum", "griffin_lim_init", "seed")}
        lap("recombine_s")
        waveform, convergence = transfer_lib.rebuild_waveform(log_magnitude, content_wave, config, **stft_settings)
        result = transfer_lib.AudioTransferResult(
            waveform=waveform, history=[{}], output_losses={}, precision="float32", chunks=1,
            spectral_convergence=convergence, content_panel=content.numpy(), result_panel=log_magnitude)
        lap("griffin_lim_s")
    else:
        requested = config.precision
        config = dataclasses.replace(config, precision=transfer_lib.resolve_precision(model, config.precision))
        settings = {**dataclasses.asdict(config), "method": method}
        chunks = transfer_lib.plan_chunks(int(content_wave.shape[0]), config, **stft_settings)
        frames = chunks[-1].end
        chosen = " (auto: faster on this CPU)" if requested == "auto" and config.precision == "bfloat16" else ""
        in_chunks = (f" in {len(chunks)} chunks of {chunks[0].frames} (memory stays that of one chunk)"
                     if len(chunks) > 1 else "")
        log(f"{config.optimizer}, {config.steps} steps on {frames} frames x {style.shape[1]} bins{in_chunks} at "
            f"{working_rate} Hz, {config.precision} matmuls{chosen}")
        report_step = progress.Progress(config.steps * len(chunks)) if show_steps else None
        result = transfer_lib.transfer_audio(
            model, content_wave, style, config, **stft_settings, content_model=content_model,
            on_step=report_step and (lambda done, losses: report_step(done, _losses_text(losses))))
        lap("transfer_s")  # optimisation and Griffin-Lim, which alternate chunk by chunk on a long clip

    # In place where it can be: a long clip's output should cost its own size once, not once per step here.
    waveform = result.waveform
    if working_rate != output_rate:
        waveform = audio_io.resample(waveform, rate_in=working_rate, rate_out=output_rate).numpy()
    if waveform.shape[0] != output_length:  # resampling can leave a sample more or less than the content has
        waveform = np.pad(waveform[:output_length], (0, max(0, output_length - waveform.shape[0])))
    peak = float(max(waveform.max(), -waveform.min()))
    gain = 1.0
    if peak > 0.99:  # keep the loudest sample inside 16-bit range rather than clipping it
        gain = 0.99 / peak
        waveform *= gain
        log(f"the result peaked at {peak:.2f} of full scale: scaled by {gain:.3f} so that it does not clip")
    lap("finish_s")

    report = {
        "content": content_path,
        "style": style_path,
        "output": output_path,
        "model": resolved.name,
        "weights": resolved.source,
        "model_path": resolved.path,
        **({"content_model": content_resolved.name, "content_model_path": content_resolved.path}
           if content_resolved is not None else {}),
        "sample_rate": output_rate,
        "working_sample_rate": working_rate,
        "stft": stft_settings,
        "duration_s": round(output_length / output_rate, 3),
        "method": method,
        **({"source_filter": conversion.as_dict()} if conversion is not None else {}),
        "settings": settings,
        "precision": result.precision,
        "loss_start": result.history[0],
        "loss_end": result.history[-1],
        "loss_output": result.output_losses,
        "chunks": result.chunks,
        "griffin_lim_spectral_convergence": result.spectral_convergence,
        "output_gain": round(gain, 4),
        "timings": timings,
    }
    content_seconds = content_wave.shape[0] / working_rate
    figure = _spectrogram_figure(
        [(f"content: {os.path.basename(content_path)}", result.content_panel, content_seconds),
         (f"style: {os.path.basename(style_path)}", chunking.pool_columns(style.numpy()),
          style_wave.shape[0] / working_rate),
         (f"result: {os.path.basename(output_path)}", result.result_panel, content_seconds)],
        sample_rate=working_rate,
    )
    lap("figure_s")
    timings["total_s"] = round(time.perf_counter() - started, 3)
    fileutil.write_files_atomically({
        paths["wav"]: audio_io.encode_wav(waveform, output_rate),
        paths["png"]: figure,
        paths["json"]: json.dumps(report, indent=2).encode(),
    })
    message = f"wrote {output_path} (+ .png, .json) in {timings['total_s']:.1f} s"
    if result.history[-1]:
        start, end = result.history[0]["style_loss"], result.history[-1]["style_loss"]
        message += (f"; final {_losses_text(result.history[-1])}; style loss {start:.4g} -> {end:.4g} "
                    f"({start / max(end, 1e-12):.1f}x lower); precision {result.precision}")
        if result.output_losses != result.history[-1]:
            message += (f"; the output, with the content's harmonics and loudness kept: "
                        f"{_losses_text(result.output_losses)}")
    log(message)
    return report


def choose_method(requested: str, spec, content_wave: tf.Tensor, style_wave: tf.Tensor, sample_rate: int, *,
                  model_asked: bool = False) -> str:
    """The method a transfer runs: "source_filter", "gram" or (conv_vae's) "recombine" (see TransferConfig.method).

    Under "auto" a model that recombines keeps to that, and a model asked for (a --model other than the default,
    --model_dir, --content_model) asks for the Gram optimisation through it; otherwise two clips that both sound
    like speech get the source-filter conversion, which moves a voice where the Gram optimisation cannot (README,
    quality section), and anything else the Gram optimisation.
    """
    if requested != "auto":
        return requested
    if spec.transfer == "recombine":
        return "recombine"
    if model_asked:
        return "gram"
    speech = (source_filter.sounds_like_speech(style_wave, sample_rate)
              and source_filter.sounds_like_speech(content_wave, sample_rate))
    return "source_filter" if speech else "gram"


def log(line: str) -> None:
    print(f"tfstyle: {line}", file=sys.stderr)


def _losses_text(losses: dict[str, float]) -> str:
    return (f"loss {losses['total_loss']:.4g} (style {losses['style_loss']:.4g}, "
            f"content {losses['content_loss']:.4g})")


def run(argv: list[str] | None = None) -> None:
    _define_flags()
    cli.run(main, argv, other_flags_to_main=True)


if __name__ == "__main__":
    run()
