"""Audio style transfer: optimise a log-magnitude spectrogram, then recover a waveform with Griffin-Lim.

The optimised variable is the log1p-magnitude spectrogram itself (initialised from the content clip or from noise).
Each step matches the content clip's feature maps and the style clip's Gram matrices through any zoo model's
`features()`, with Adam and a decaying learning rate, and clips the spectrogram to a valid range between steps.

    python -m tfstyle.transfer --content=examples/music/content_violin_m06.wav \\
        --style=examples/music/style_piano_m02.wav --output=out/violin_as_piano.wav

writes out/violin_as_piano.wav (as long as the content clip), .png (content, style and result spectrograms) and
.json (settings, losses at start and end, timings).
"""

import dataclasses
import functools
import io
import json
import os
import sys
import time
from typing import Callable, Mapping

import numpy as np
import tensorflow as tf
from absl import flags

from tfstyle import audio_io, cli, configs, fileutil, losses, spectral_ops
from tfstyle.errors import InputError

LOSS_NAMES = ("total_loss", "style_loss", "content_loss", "tv_loss", "l2_loss")


@dataclasses.dataclass
class TransferResult:
    """What `transfer_spectrogram` returns.

    Attributes:
        log_magnitude: the optimised log1p-magnitude spectrogram, [frames, bins].
        history: the losses at the start and after every step (L-BFGS: iteration), dicts of LOSS_NAMES -> float.
        precision: the matmuls' precision, e.g. "bfloat16", or "bfloat16; float32 from iteration 42" when
            L-BFGS finished that way (see `_minimise_lbfgs`).
    """

    log_magnitude: np.ndarray
    history: list[dict[str, float]]
    precision: str = "float32"


def _layer_weights(
    requested: tuple[tuple[str, float], ...], available: tuple[str, ...], kind: str
) -> dict[str, float]:
    if not requested:
        return {name: 1.0 for name in available}
    weights = dict(requested)
    unknown = sorted(set(weights) - set(available))
    if unknown:
        raise InputError(f"unknown {kind} layer(s) {', '.join(unknown)}; the model has: {', '.join(available)}")
    if any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
        raise InputError(f"{kind} layer weights must be >= 0 and not all 0, got {weights}")
    return weights


@functools.lru_cache(maxsize=None)
def bfloat16_matmuls_are_faster() -> bool:
    """Whether this CPU runs bfloat16 matmuls at least 1.3x faster than float32 (a 0.3 s probe, done once).

    Best of five runs each, interleaved, so that a busy moment on a shared machine cannot decide it.
    """
    operands = {}
    for dtype in (tf.float32, tf.bfloat16):
        operands[dtype] = (tf.cast(tf.random.stateless_normal([512, 4096], seed=[0, 0]), dtype),
                           tf.cast(tf.random.stateless_normal([4096, 1024], seed=[0, 1]), dtype))
        tf.matmul(*operands[dtype]).numpy()
    best = {dtype: float("inf") for dtype in operands}
    for _ in range(5):
        for dtype, (a, b) in operands.items():
            start = time.perf_counter()
            tf.matmul(a, b).numpy()
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[tf.bfloat16] * 1.3 < best[tf.float32]


def transfer_spectrogram(
    model,
    content_log_magnitude: tf.Tensor,
    style_log_magnitude: tf.Tensor,
    config: configs.TransferConfig,
    *,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TransferResult:
    """Optimises a log-magnitude spectrogram towards the content of one clip and the style of another.

    Args:
        model: any object with `features(log_magnitude) -> {layer: tensor}` and `feature_layer_names`.
        content_log_magnitude: log1p |STFT| of the content clip, [frames, bins]; the result has this shape.
        style_log_magnitude: log1p |STFT| of the style clip, [style_frames, bins] (any length).
        config: optimisation settings.
        on_step: called after every step (L-BFGS: iteration) with (steps done, losses of that step).

    Returns:
        The optimised spectrogram and the loss history.
    """
    content = tf.convert_to_tensor(content_log_magnitude, tf.float32)[tf.newaxis]
    style = tf.convert_to_tensor(style_log_magnitude, tf.float32)[tf.newaxis]
    layer_names = tuple(model.feature_layer_names)
    style_weights = _layer_weights(config.style_layers, layer_names, "style")
    content_weights = _layer_weights(config.content_layers, layer_names, "content")

    matmul_dtype = tf.float32
    if hasattr(model, "use_bfloat16_matmuls"):
        model(content)  # builds the filters for this bin count
        model.use_bfloat16_matmuls(config.precision == "bfloat16" or (
            config.precision == "auto" and bfloat16_matmuls_are_faster()))
        if model.uses_bfloat16_matmuls:  # the style loss's matmuls follow the model's
            matmul_dtype = tf.bfloat16

    # Targets are constant across steps: computed once here, never inside the step.
    style_features = model.features(style)
    style_targets = {
        name: losses.StyleTarget(style_features[name], over=config.gram_over, frames=content.shape[1],
                                 window=config.gram_window, explicit=config.explicit_gram, matmul_dtype=matmul_dtype)
        for name in style_weights
    }
    content_features = model.features(content)
    content_targets = {name: content_features[name] for name in content_weights}
    del style_features, content_features

    # log1p magnitudes are >= 0; the ceiling stops a runaway step from producing absurd levels.
    ceiling = float(max(tf.reduce_max(content), tf.reduce_max(style)))
    if config.init == "content":
        initial = content
    else:
        noise = tf.abs(tf.random.stateless_normal(tf.shape(content), seed=[config.seed, 1]))
        initial = noise * tf.math.reduce_std(content)
    spectrogram = tf.Variable(tf.clip_by_value(initial, 0.0, ceiling), name="log_magnitude")

    def weighted_mean(values: Mapping[str, tf.Tensor], weights: Mapping[str, float]) -> tf.Tensor:
        return tf.add_n([weights[name] * values[name] for name in weights]) / sum(weights.values())

    def compute_losses(x: tf.Tensor) -> dict[str, tf.Tensor]:
        features = model.features(x)
        style_loss = weighted_mean(
            {n: losses.style_loss(features[n], style_targets[n]) for n in style_weights},
            style_weights,
        )
        content_loss = weighted_mean(
            {n: losses.content_loss(features[n], content_targets[n]) for n in content_weights}, content_weights
        )
        tv_loss = losses.total_variation(x)
        l2_loss = losses.l2_magnitude(x)
        total = (
            config.style_weight * style_loss
            + config.content_weight * content_loss
            + config.tv_weight * tv_loss
            + config.l2_weight * l2_loss
        )
        return dict(zip(LOSS_NAMES, (total, style_loss, content_loss, tv_loss, l2_loss)))

    precision = matmul_dtype.name

    def to_float32(iteration: int) -> None:
        nonlocal precision
        model.use_bfloat16_matmuls(False)
        for target in style_targets.values():
            target.use_matmul_dtype(tf.float32)
        precision += f"; float32 from iteration {iteration}"

    if config.optimizer == "lbfgs":
        history = _minimise_lbfgs(compute_losses, spectrogram, ceiling, config, on_step,
                                  to_float32=to_float32 if matmul_dtype == tf.bfloat16 else None)
    else:
        history = _minimise_adam(compute_losses, spectrogram, ceiling, config, on_step)
    return TransferResult(log_magnitude=spectrogram.numpy()[0], history=history, precision=precision)


def _check_finite(step_losses: dict[str, float], done: int) -> None:
    if not np.isfinite(step_losses["total_loss"]):
        raise InputError(f"optimisation diverged at step {done} (loss is {step_losses['total_loss']}); "
                         "lower --learning_rate")


def _minimise_adam(compute_losses, spectrogram: tf.Variable, ceiling: float, config, on_step) -> list[dict]:
    import keras  # Deferred: only the optimiser needs it here.

    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate, decay_steps=config.steps, decay_rate=config.learning_rate_decay
    )
    optimizer = keras.optimizers.Adam(learning_rate=schedule)

    @tf.function
    def step() -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            step_losses = compute_losses(spectrogram)
        gradient = tape.gradient(step_losses["total_loss"], spectrogram)
        optimizer.apply_gradients([(gradient, spectrogram)])
        spectrogram.assign(tf.clip_by_value(spectrogram, 0.0, ceiling))
        return step_losses

    history = []
    for index in range(config.steps):
        step_losses = {name: float(value) for name, value in step().items()}
        _check_finite(step_losses, index + 1)
        history.append(step_losses)
        if on_step is not None:
            on_step(index + 1, step_losses)
    history.append({name: float(value) for name, value in compute_losses(spectrogram).items()})
    return history


def _minimise_lbfgs(compute_losses, spectrogram: tf.Variable, ceiling: float, config, on_step,
                    to_float32: Callable[[int], None] | None = None) -> list[dict]:
    """scipy's L-BFGS-B (the original method's optimiser) with [0, ceiling] as bounds instead of clipping.

    A loss with bfloat16 matmuls is good to a few digits only (its input is rounded to 8 bits, so it is flat
    over short steps); once the line search can no longer find a decrease, the run would end early.
    `to_float32`, if given, then switches the matmuls to float32, and the remaining iterations continue.
    """
    import scipy.optimize  # Deferred; scipy comes with librosa.

    shape = spectrogram.shape
    history = [{name: float(value) for name, value in compute_losses(spectrogram).items()}]
    latest = {}

    def after_iteration(flat: np.ndarray) -> None:
        _check_finite(latest, len(history))
        history.append(dict(latest))  # the line search's last evaluation is the accepted point
        if on_step is not None:
            on_step(len(history) - 1, history[-1])

    def run(start: np.ndarray, iterations: int) -> np.ndarray:
        @tf.function
        def losses_and_gradient(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                step_losses = compute_losses(x)
            return step_losses, tape.gradient(step_losses["total_loss"], x)

        def value_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
            step_losses, gradient = losses_and_gradient(tf.constant(flat.reshape(shape), tf.float32))
            latest.update({name: float(value) for name, value in step_losses.items()})
            return float(latest["total_loss"]), gradient.numpy().ravel().astype(np.float64)

        return scipy.optimize.minimize(
            value_and_gradient, start, jac=True, method="L-BFGS-B", bounds=scipy.optimize.Bounds(0.0, ceiling),
            callback=after_iteration,
            # No tolerance-based early stop: the relative losses have tiny gradients, and scipy's defaults would
            # end the run after a handful of iterations. `steps` decides.
            options={"maxiter": iterations, "maxfun": 2 * iterations + 20, "ftol": 0.0, "gtol": 0.0}).x

    solution = run(spectrogram.numpy().ravel().astype(np.float64), config.steps)
    remaining = config.steps - (len(history) - 1)
    if to_float32 is not None and remaining > 0:
        to_float32(len(history) - 1)
        solution = run(solution, remaining)
    spectrogram.assign(solution.reshape(shape).astype(np.float32))
    return history


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


def _parse_layer_weights(text: str, flag_name: str) -> tuple[tuple[str, float], ...]:
    """'conv1:1,conv2:0.5' -> (('conv1', 1.0), ('conv2', 0.5)); a bare name has weight 1."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition(":")
        try:
            pairs.append((name, float(weight) if weight else 1.0))
        except ValueError:
            raise InputError(f"--{flag_name}: {item!r} is not name:weight") from None
    return tuple(pairs)


_DEFAULTS = configs.TransferConfig()

def _define_flags() -> None:
    # Defined when the module runs as a command, not on import: the commands share flag names, and tests
    # import several of them as libraries.
    flags.DEFINE_string("content", None, "Audio file whose content (what is said or played) to keep.")
    flags.DEFINE_string("style", None, "Audio file whose style (voice, timbre, texture) to impose.")
    flags.DEFINE_string("output", None, "Output .wav path; a .png and a .json are written beside it.")
    flags.DEFINE_string("model", "random_cnn", "Zoo model giving the features (see tfstyle.list_models()), resolved to "
                        "its newest shipped SavedModel, or the path of a SavedModel version folder.")
    flags.DEFINE_string("model_dir", None, "A training run (python -m tfstyle.train) whose model to use; "
                        "overrides --model, --sample_rate and the STFT flags.")
    flags.DEFINE_integer("steps", _DEFAULTS.steps, "Optimisation steps.")
    flags.DEFINE_integer("sample_rate", None, "Work at this rate (Hz); default: the content file's own rate.")
    flags.DEFINE_integer("frame_length", spectral_ops.FRAME_LENGTH, "STFT window (and FFT) length in samples.")
    flags.DEFINE_integer("frame_step", spectral_ops.FRAME_STEP, "STFT hop in samples.")
    flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Adam's initial learning rate.")
    flags.DEFINE_float("learning_rate_decay", _DEFAULTS.learning_rate_decay,
                       "Factor the learning rate decays by over the whole run.")
    flags.DEFINE_enum("init", _DEFAULTS.init, ["content", "noise"], "Start from the content spectrogram or from noise.")
    flags.DEFINE_float("content_weight", _DEFAULTS.content_weight, "Content loss weight; 0 = style only.")
    flags.DEFINE_float("style_weight", _DEFAULTS.style_weight, "Style loss weight.")
    flags.DEFINE_string("content_layers", "", "Content layers as name:weight,...; default: every feature layer.")
    flags.DEFINE_string("style_layers", "", "Style layers as name:weight,...; default: every feature layer.")
    flags.DEFINE_enum("gram_over", _DEFAULTS.gram_over, ["time", "time_frequency"], "Axes the Gram matrix sums over.")
    flags.DEFINE_integer("gram_window", _DEFAULTS.gram_window, "Most frames per Gram matrix; longer clips are matched "
                         "window by window (0 = one Gram over the whole clip).")
    flags.DEFINE_float("tv_weight", _DEFAULTS.tv_weight, "Total-variation penalty weight.")
    flags.DEFINE_float("l2_weight", _DEFAULTS.l2_weight, "L2 magnitude penalty weight.")
    flags.DEFINE_integer("griffin_lim_iters", _DEFAULTS.griffin_lim_iters, "Griffin-Lim iterations.")
    flags.DEFINE_float("griffin_lim_momentum", _DEFAULTS.griffin_lim_momentum, "Griffin-Lim momentum (0 = classic).")
    flags.DEFINE_enum("optimizer", _DEFAULTS.optimizer, ["adam", "lbfgs"],
                      "Adam with learning-rate decay, or L-BFGS-B (the original method's optimiser).")
    flags.DEFINE_enum("precision", _DEFAULTS.precision, ["auto", "float32", "bfloat16"],
                      "Matmul precision of the random CNN; auto picks bfloat16 where it is faster here.")
    flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of the noise init and of Griffin-Lim's initial phase.")


FLAGS = flags.FLAGS


def _config_from_flags() -> configs.TransferConfig:
    return configs.TransferConfig(
        steps=FLAGS.steps,
        learning_rate=FLAGS.learning_rate,
        learning_rate_decay=FLAGS.learning_rate_decay,
        init=FLAGS.init,
        content_weight=FLAGS.content_weight,
        style_weight=FLAGS.style_weight,
        content_layers=_parse_layer_weights(FLAGS.content_layers, "content_layers"),
        style_layers=_parse_layer_weights(FLAGS.style_layers, "style_layers"),
        gram_over=FLAGS.gram_over,
        gram_window=FLAGS.gram_window,
        tv_weight=FLAGS.tv_weight,
        l2_weight=FLAGS.l2_weight,
        griffin_lim_iters=FLAGS.griffin_lim_iters,
        griffin_lim_momentum=FLAGS.griffin_lim_momentum,
        seed=FLAGS.seed,
        optimizer=FLAGS.optimizer,
        precision=FLAGS.precision,
    )


def _load_clip(path: str, role: str, *, sample_rate: int | None, frame_length: int) -> tuple[tf.Tensor, int]:
    waveform, rate = audio_io.load_audio(path, sample_rate=sample_rate, min_samples=frame_length)
    if not bool(tf.reduce_any(waveform != 0.0)):
        raise InputError(f"{path}: the {role} clip is silent (all samples are zero)")
    return waveform, rate


def _load_model():
    """(name, model) from --model_dir (a training run), else --model (see export.load_model)."""
    if FLAGS.model_dir:
        from tfstyle import train_lib  # Deferred: training machinery is not needed otherwise.

        experiment, model = train_lib.load_trained_model(FLAGS.model_dir)
        return experiment.model, model
    from tfstyle import export  # Deferred: SavedModel machinery is not needed for the random CNN.

    return export.load_model(FLAGS.model, untrained_ok=True)


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
    config = _config_from_flags()
    fileutil.check_writable_output(FLAGS.output)
    model_name, model = _load_model()
    stem = os.path.splitext(FLAGS.output)[0]
    stft_settings = {"frame_length": FLAGS.frame_length, "frame_step": FLAGS.frame_step}
    sample_rate = FLAGS.sample_rate
    if hasattr(model, "signal_config"):  # a trained model fixes the signal it understands
        signal = model.signal_config()
        stft_settings = {"frame_length": signal["frame_length"], "frame_step": signal["frame_step"]}
        sample_rate = signal["sample_rate"]
    timings = {}
    started = clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = round(now - clock, 3)
        clock = now

    content_wave, sample_rate = _load_clip(FLAGS.content, "content", sample_rate=sample_rate,
                                           frame_length=stft_settings["frame_length"])
    style_wave, _ = _load_clip(FLAGS.style, "style", sample_rate=sample_rate,
                               frame_length=stft_settings["frame_length"])
    content = spectral_ops.log_magnitude_spectrogram(content_wave, **stft_settings)
    style = spectral_ops.log_magnitude_spectrogram(style_wave, **stft_settings)
    lap("load_s")

    if hasattr(model, "recombine"):
        # Content and style pipelines (conv_vae): one forward pass recombines them, nothing to optimise.
        print(f"tfstyle: {model_name}, recombining content latent and style embedding at {sample_rate} Hz",
              file=sys.stderr)
        result = TransferResult(log_magnitude=model.recombine(content_wave[tf.newaxis],
                                                              style_wave[tf.newaxis]).numpy()[0], history=[{}])
        lap("recombine_s")
    else:
        print(f"tfstyle: {model_name}, {config.steps} steps on {content.shape[0]} frames x {content.shape[1]} bins "
              f"at {sample_rate} Hz", file=sys.stderr)
        progress = cli.Progress(config.steps)
        result = transfer_spectrogram(model, content, style, config, on_step=lambda done, step_losses: progress(
            done, f"loss {step_losses['total_loss']:.4g} (style {step_losses['style_loss']:.4g}, "
                  f"content {step_losses['content_loss']:.4g})"))
        lap("optimise_s")

    magnitude = spectral_ops.magnitude_from_log(result.log_magnitude)
    waveform = spectral_ops.griffin_lim(
        magnitude,
        n_iter=config.griffin_lim_iters,
        length=int(content_wave.shape[0]),
        momentum=config.griffin_lim_momentum,
        seed=config.seed,
        **stft_settings,
    )
    convergence = float(spectral_ops.spectral_convergence(magnitude, waveform, **stft_settings))
    peak = float(tf.reduce_max(tf.abs(waveform)))
    if peak > 0.99:  # keep the loudest sample inside 16-bit range rather than clipping it
        waveform = waveform * (0.99 / peak)
    lap("griffin_lim_s")

    report = {
        "content": FLAGS.content,
        "style": FLAGS.style,
        "output": FLAGS.output,
        "model": model_name,
        "model_dir": FLAGS.model_dir,
        "sample_rate": sample_rate,
        "stft": stft_settings,
        "duration_s": round(int(content_wave.shape[0]) / sample_rate, 3),
        "settings": dataclasses.asdict(config),
        "precision": result.precision,
        "loss_start": result.history[0],
        "loss_end": result.history[-1],
        "griffin_lim_spectral_convergence": convergence,
        "timings": timings,
    }
    figure = _spectrogram_figure(
        [(f"content: {os.path.basename(FLAGS.content)}", content.numpy()),
         (f"style: {os.path.basename(FLAGS.style)}", style.numpy()),
         (f"result: {os.path.basename(FLAGS.output)}", result.log_magnitude)],
        sample_rate=sample_rate,
        frame_step=FLAGS.frame_step,
    )
    lap("figure_s")
    timings["total_s"] = round(time.perf_counter() - started, 3)
    fileutil.write_files_atomically({
        FLAGS.output: audio_io.encode_wav(waveform, sample_rate),
        stem + ".png": figure,
        stem + ".json": json.dumps(report, indent=2).encode(),
    })
    message = f"tfstyle: wrote {FLAGS.output} (+ .png, .json) in {timings['total_s']:.1f} s"
    if "style_loss" in result.history[0]:
        start, end = result.history[0]["style_loss"], result.history[-1]["style_loss"]
        message += f"; style loss {start:.4g} -> {end:.4g} ({start / max(end, 1e-12):.1f}x lower)"
    print(message, file=sys.stderr)


def run(argv: list[str] | None = None) -> None:
    _define_flags()
    cli.run(main, argv)


if __name__ == "__main__":
    run()
