"""The style-transfer optimisation as a library: `transfer_spectrogram(model, content, style, config)`.

The optimised variable is the log1p-magnitude spectrogram itself (initialised from the content clip or from noise).
Each step matches the content clip's feature maps and the style clip's Gram matrices through any model that
follows the `FeatureModel` protocol, with Adam and a decaying learning rate (or scipy's L-BFGS-B), and keeps the
spectrogram in a valid range. `python -m tfstyle.transfer` is the command around it.
"""

import dataclasses
import functools
import time
from typing import Callable, Mapping, Protocol, runtime_checkable

import numpy as np
import tensorflow as tf

from tfstyle import configs, losses
from tfstyle.errors import InputError


@runtime_checkable
class FeatureModel(Protocol):
    """What the transfer loop needs of a model: named feature layers of a log-magnitude spectrogram.

    Optional hooks, used where a model has them:
        use_bfloat16_matmuls(enabled) and uses_bfloat16_matmuls: run its matmuls in bfloat16 (the random CNN).
        signal_config() -> {"sample_rate", "frame_length", "frame_step"}: the signal it was trained on.
    """

    feature_layer_names: tuple[str, ...]

    def features(self, log_magnitude: tf.Tensor) -> Mapping[str, tf.Tensor]:
        """{layer name: activations} of log1p magnitudes [batch, frames, bins]; differentiable."""


@dataclasses.dataclass
class TransferResult:
    """What `transfer_spectrogram` returns.

    Attributes:
        log_magnitude: the optimised log1p-magnitude spectrogram, [frames, bins].
        history: history[k] holds the losses after k steps (L-BFGS: iterations), history[0] those of the starting
            point; dicts of total_loss, style_loss, content_loss, tv_loss and l2_loss -> float.
        precision: the matmuls' precision, e.g. "bfloat16", or "bfloat16; float32 from iteration 42" when
            L-BFGS finished that way (see `_minimise_lbfgs`).
        output_losses: the losses of `log_magnitude` itself, after `style_lifter` and `keep_loudness` (history[-1]
            holds those of the optimised spectrogram before them).
    """

    log_magnitude: np.ndarray
    history: list[dict[str, float]]
    precision: str = "float32"
    output_losses: dict[str, float] = dataclasses.field(default_factory=dict)


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


def resolve_precision(model, requested: str) -> str:
    """The matmul precision a transfer through `model` runs in: "float32" or "bfloat16".

    Only models with the `use_bfloat16_matmuls` hook can run in bfloat16; "auto" picks it where a probe of this
    CPU finds it faster.
    """
    if not hasattr(model, "use_bfloat16_matmuls") or requested == "float32":
        return "float32"
    if requested == "bfloat16" or bfloat16_matmuls_are_faster():
        return "bfloat16"
    return "float32"


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
        model: a `FeatureModel`; one whose matmul precision can be switched is left as it was found.
        content_log_magnitude: log1p |STFT| of the content clip, [frames, bins]; the result has this shape.
        style_log_magnitude: log1p |STFT| of the style clip, [style_frames, bins] (any length).
        config: optimisation settings.
        on_step: called after every step (L-BFGS: iteration) with (steps done, the losses after them).

    Returns:
        The optimised spectrogram and the loss history.
    """
    content = tf.convert_to_tensor(content_log_magnitude, tf.float32)[tf.newaxis]
    style = tf.convert_to_tensor(style_log_magnitude, tf.float32)[tf.newaxis]
    layer_names = tuple(model.feature_layer_names)
    style_weights = _layer_weights(config.style_layers, layer_names, "style")
    content_weights = _layer_weights(config.content_layers, layer_names, "content")

    matmul_dtype = tf.as_dtype(resolve_precision(model, config.precision))
    switchable = hasattr(model, "use_bfloat16_matmuls")
    if switchable:
        model(content)  # builds the filters for this bin count
        was_bfloat16 = model.uses_bfloat16_matmuls
        model.use_bfloat16_matmuls(matmul_dtype == tf.bfloat16)  # the style loss's matmuls follow the model's
    try:
        return _optimise(model, content, style, style_weights, content_weights, matmul_dtype, config, on_step)
    finally:
        if switchable:  # leave the caller's model as it was
            model.use_bfloat16_matmuls(was_bfloat16)


def _optimise(model, content, style, style_weights, content_weights, matmul_dtype, config, on_step):
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
        parts = {
            "style_loss": weighted_mean(
                {n: losses.style_loss(features[n], style_targets[n]) for n in style_weights}, style_weights),
            "content_loss": weighted_mean(
                {n: losses.content_loss(features[n], content_targets[n]) for n in content_weights}, content_weights),
            "tv_loss": losses.total_variation(x),
            "l2_loss": losses.l2_magnitude(x),
        }
        weights = {"style_loss": config.style_weight, "content_loss": config.content_weight,
                   "tv_loss": config.tv_weight, "l2_loss": config.l2_weight}
        return {"total_loss": tf.add_n([weights[name] * value for name, value in parts.items()]), **parts}

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
    result = spectrogram[0]
    if config.style_lifter:
        result = keep_envelope_change(result, content[0], config.style_lifter)
    if config.keep_loudness:
        result = match_frame_loudness(result, content[0])
    result = tf.clip_by_value(result, 0.0, ceiling)
    if config.style_lifter or config.keep_loudness:
        output_losses = {name: float(value) for name, value in compute_losses(result[tf.newaxis]).items()}
    else:
        output_losses = history[-1]
    return TransferResult(log_magnitude=result.numpy(), history=history, precision=precision,
                          output_losses=output_losses)


def keep_envelope_change(result: tf.Tensor, content: tf.Tensor, lifter: int) -> tf.Tensor:
    """content + the spectral envelope of (result - content): the change's cepstrum below quefrency `lifter`.

    Log-magnitudes [frames, bins]. What the optimisation did to the envelope (timbre, formants) stays; what it did
    to the fine structure (harmonics: pitch, notes) is undone.
    """
    change = result - content
    cepstrum = tf.signal.irfft(tf.complex(change, tf.zeros_like(change)))
    quefrencies = tf.range(tf.shape(cepstrum)[-1])
    keep = (quefrencies < lifter) | (quefrencies > tf.shape(cepstrum)[-1] - lifter)
    envelope = tf.math.real(tf.signal.rfft(cepstrum * tf.cast(keep, cepstrum.dtype)))
    return content + envelope


def match_frame_loudness(result: tf.Tensor, content: tf.Tensor) -> tf.Tensor:
    """log1p-magnitudes [frames, bins] of `result` with each frame scaled to the norm of the content's frame."""
    magnitude, reference = tf.math.expm1(tf.maximum(result, 0.0)), tf.math.expm1(content)
    gain = tf.norm(reference, axis=-1, keepdims=True) / tf.maximum(tf.norm(magnitude, axis=-1, keepdims=True), 1e-6)
    return tf.math.log1p(magnitude * gain)


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

    # Each step returns the losses of the point it started from, so step k + 1 tells those after k steps: the
    # callback for step k runs one step late, and the last one gets a final evaluation.
    history = []
    for index in range(config.steps + 1):
        if index < config.steps:
            step_losses = {name: float(value) for name, value in step().items()}
        else:
            step_losses = {name: float(value) for name, value in compute_losses(spectrogram).items()}
        _check_finite(step_losses, index)
        history.append(step_losses)
        if on_step is not None and index > 0:
            on_step(index, step_losses)
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


