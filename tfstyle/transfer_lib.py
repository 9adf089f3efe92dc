"""The style-transfer optimisation as a library: `transfer_spectrogram(model, content, style, config)`.

The optimised variable is the log1p-magnitude spectrogram itself (initialised from the content clip or from noise).
Each step matches the content clip's feature maps and the style clip's Gram matrices through any model that
follows the `FeatureModel` protocol, with Adam and a decaying learning rate (or scipy's L-BFGS-B), and keeps the
spectrogram in a valid range. `python -m tfstyle.transfer` is the command around it.
"""

import contextlib
import dataclasses
import functools
import time
from typing import Callable, Mapping, Protocol, runtime_checkable

import numpy as np
import tensorflow as tf

from tfstyle import chunking, configs, losses, spectral_ops
from tfstyle.errors import InputError


@runtime_checkable
class FeatureModel(Protocol):
    """What the transfer loop needs of a model: named feature layers of a log-magnitude spectrogram.

    Optional hooks, used where a model has them:
        feature_roles() -> {layer: "style" | "content"}: the default style and content layers.
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


@dataclasses.dataclass
class AudioTransferResult:
    """What `transfer_audio` returns.

    Attributes:
        waveform: the result, float32 [samples], as long as the content clip.
        history: as TransferResult's; with several chunks, the frame-weighted mean over them at each step.
        output_losses: likewise.
        precision: as TransferResult's (each distinct one, if chunks differed).
        chunks: how many chunks the clip was transferred in (1 for a clip of at most `gram_window` frames).
        spectral_convergence: ||S - |STFT(waveform)||| / ||S||, S the optimised magnitudes (Griffin-Lim's fit).
        content_panel, result_panel: log-magnitudes for a figure, [columns, bins]; for a long clip each column is
            the maximum over a run of frames (see chunking.ColumnPooler).
    """

    waveform: np.ndarray
    history: list[dict[str, float]]
    output_losses: dict[str, float]
    precision: str
    chunks: int
    spectral_convergence: float
    content_panel: np.ndarray
    result_panel: np.ndarray


def plan_chunks(samples: int, config: configs.TransferConfig, *, frame_length: int,
                frame_step: int) -> list[chunking.Chunk]:
    """The chunks `transfer_audio` cuts a clip of `samples` samples into: at most `gram_window` frames each."""
    frames = spectral_ops.num_frames(samples, frame_step=frame_step)
    return chunking.plan_chunks(frames, config.gram_window or frames,
                                chunking.overlap_frames(frame_length, frame_step))


def transfer_audio(
    model,
    content_waveform: tf.Tensor,
    style_log_magnitude: tf.Tensor,
    config: configs.TransferConfig,
    *,
    frame_length: int,
    frame_step: int,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    content_model=None,
) -> AudioTransferResult:
    """Style transfer from a content waveform to a result waveform, in memory that does not grow with its length.

    A clip of at most `gram_window` frames is optimised whole (`transfer_spectrogram`) and rebuilt by Griffin-Lim.
    A longer one goes chunk by chunk (`plan_chunks`): each chunk's spectrogram is computed from the waveform,
    optimised against the whole style clip's Gram matrices, and rebuilt at once by `chunking.ChunkedGriffinLim`,
    which carries the phase across joins; only the input and output waveforms are held whole.

    Args:
        model: a `FeatureModel`.
        content_waveform: float32 [samples] at the rate the STFT settings are meant for.
        style_log_magnitude: log1p |STFT| of the style clip, [style_frames, bins].
        config: optimisation and phase-recovery settings.
        frame_length, frame_step: the STFT both spectrograms use.
        on_step: called after every step with (steps done over all chunks, the chunk's losses after them).
        content_model: a `FeatureModel` whose content layers the content loss uses instead of `model`'s (e.g.
            content_encoder, whose features follow the words and not the voice); None: `model`'s.
    """
    content_waveform = tf.convert_to_tensor(content_waveform, tf.float32)
    samples = int(content_waveform.shape[0])
    stft_settings = dict(frame_length=frame_length, frame_step=frame_step)
    chunks = plan_chunks(samples, config, **stft_settings)
    rebuild = chunking.ChunkedGriffinLim(samples, n_iter=config.griffin_lim_iters,
                                         momentum=config.griffin_lim_momentum, seed=config.seed, **stft_settings)
    total_frames = chunks[-1].end
    content_panel, result_panel = chunking.ColumnPooler(total_frames), chunking.ColumnPooler(total_frames)
    histories, output_losses, precisions = [], [], []
    # One optimiser, one precision switch and one traced step for all chunks (see SpectrogramOptimiser).
    # The content's phases start Griffin-Lim where asked: the result keeps the content's harmonics (style_lifter),
    # so they are close to the answer already, and the same iterations reach a lower spectral error.
    content_phases = config.griffin_lim_init == "content"
    spectrum = chunking.stft_frames(content_waveform, chunks[0], **stft_settings)
    content = spectral_ops.log_magnitude(tf.abs(spectrum))
    matmul_dtype = tf.as_dtype(resolve_precision(model, config.precision))
    with _matmuls_in(model, matmul_dtype, content[tf.newaxis]):
        optimise = SpectrogramOptimiser(model, style_log_magnitude, content.shape, config, matmul_dtype,
                                        content_model=content_model)
        for index, chunk in enumerate(chunks):
            if index:  # the first chunk's spectrogram is the one computed above
                spectrum = chunking.stft_frames(content_waveform, chunk, **stft_settings)
                content = spectral_ops.log_magnitude(tf.abs(spectrum))
            done_before = index * config.steps
            result = optimise(
                content, on_step=None if on_step is None else lambda done, losses: on_step(done_before + done, losses))
            if len(chunks) == 1:  # the whole clip: one Griffin-Lim, with the centred STFT's edges
                return _whole_clip_result(result, content, content_waveform, config, stft_settings)
            rebuild.add(chunk, spectral_ops.magnitude_from_log(result.log_magnitude),
                        initial=spectrum if content_phases else None)
            new = slice(chunk.overlap, None)  # frames the previous chunk did not already show
            content_panel.add(content.numpy()[new])
            result_panel.add(result.log_magnitude[new])
            histories.append((chunk.frames, result.history))
            output_losses.append((chunk.frames, [result.output_losses]))
            precisions.append(result.precision)
    return AudioTransferResult(
        waveform=rebuild.waveform, history=_frame_weighted(histories), output_losses=_frame_weighted(output_losses)[0],
        precision="; ".join(dict.fromkeys(precisions)), chunks=len(chunks),
        spectral_convergence=rebuild.spectral_convergence, content_panel=content_panel.result(),
        result_panel=result_panel.result())


def _whole_clip_result(result: "TransferResult", content: tf.Tensor, content_waveform: tf.Tensor, config,
                       stft_settings):
    waveform, convergence = rebuild_waveform(result.log_magnitude, content_waveform, config, **stft_settings)
    return AudioTransferResult(
        waveform=waveform, history=result.history, output_losses=result.output_losses, precision=result.precision,
        chunks=1, spectral_convergence=convergence, content_panel=content.numpy(), result_panel=result.log_magnitude)


def rebuild_waveform(log_magnitude: np.ndarray, content_waveform: tf.Tensor, config: configs.TransferConfig, *,
                     frame_length: int, frame_step: int) -> tuple[np.ndarray, float]:
    """(Griffin-Lim's waveform of a whole log1p-magnitude spectrogram, as long as the content clip; its spectral
    convergence). Griffin-Lim starts from the content clip's phases or random ones (`config.griffin_lim_init`)."""
    stft_settings = dict(frame_length=frame_length, frame_step=frame_step)
    magnitude = spectral_ops.magnitude_from_log(log_magnitude)
    init = "random"
    if config.griffin_lim_init == "content":
        init = spectral_ops.stft(content_waveform, **stft_settings)
    waveform = spectral_ops.griffin_lim(magnitude, n_iter=config.griffin_lim_iters, init=init,
                                        length=int(content_waveform.shape[0]), momentum=config.griffin_lim_momentum,
                                        seed=config.seed, **stft_settings)
    return waveform.numpy(), float(spectral_ops.spectral_convergence(magnitude, waveform, **stft_settings))


def _frame_weighted(weighted_histories: list[tuple[int, list[dict[str, float]]]]) -> list[dict[str, float]]:
    """Step by step, the mean of several chunks' losses weighted by their frames (a chunk that stopped early, as
    L-BFGS can, keeps its last losses)."""
    steps = max(len(history) for _, history in weighted_histories)
    total = sum(frames for frames, _ in weighted_histories)
    return [{name: sum(frames * history[min(k, len(history) - 1)][name]
                       for frames, history in weighted_histories) / total
             for name in weighted_histories[0][1][0]}
            for k in range(steps)]


def _layer_weights(requested: tuple[tuple[str, float], ...], model, kind: str) -> dict[str, float]:
    """Layer -> weight for the style or content loss: as requested, else the model's layers of that role
    (`feature_roles`), else every layer, weight 1."""
    available = tuple(model.feature_layer_names)
    if not requested:
        roles = model.feature_roles() if hasattr(model, "feature_roles") else {}
        return {name: 1.0 for name in available if roles.get(name) == kind} or {name: 1.0 for name in available}
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
    content_model=None,
) -> TransferResult:
    """Optimises a log-magnitude spectrogram towards the content of one clip and the style of another.

    Args:
        model: a `FeatureModel`; one whose matmul precision can be switched is left as it was found.
        content_log_magnitude: log1p |STFT| of the content clip, [frames, bins]; the result has this shape.
        style_log_magnitude: log1p |STFT| of the style clip, [style_frames, bins] (any length).
        config: optimisation settings.
        on_step: called after every step (L-BFGS: iteration) with (steps done, the losses after them).
        content_model: as for `transfer_audio`.

    Returns:
        The optimised spectrogram and the loss history.
    """
    content = tf.convert_to_tensor(content_log_magnitude, tf.float32)
    matmul_dtype = tf.as_dtype(resolve_precision(model, config.precision))
    with _matmuls_in(model, matmul_dtype, content[tf.newaxis]):  # the style loss's matmuls follow the model's
        optimiser = SpectrogramOptimiser(model, style_log_magnitude, content.shape, config, matmul_dtype,
                                         content_model=content_model)
        return optimiser(content, on_step=on_step)


@contextlib.contextmanager
def _matmuls_in(model, dtype: tf.DType, sample: tf.Tensor):
    """Runs a model that can switch its matmul precision in `dtype`, and leaves it as it was found."""
    if not hasattr(model, "use_bfloat16_matmuls"):
        yield
        return
    model(sample)  # builds the filters for this bin count
    was_bfloat16 = model.uses_bfloat16_matmuls
    model.use_bfloat16_matmuls(dtype == tf.bfloat16)
    try:
        yield
    finally:
        model.use_bfloat16_matmuls(was_bfloat16)


class SpectrogramOptimiser:
    """The optimisation for one style and one spectrogram shape, run on as many content spectrograms as needed.

    The style targets, the variables and the compiled step are made once, so that the chunks of a long clip reuse
    them: TensorFlow never frees a traced function's custom gradients (it registers them globally), so a step
    traced per chunk would keep every chunk's targets alive and memory would grow with the clip.

    Args:
        model: a `FeatureModel`, already in the matmul precision `matmul_dtype` (see `_matmuls_in`).
        style_log_magnitude: log1p |STFT| of the style clip, [style_frames, bins].
        shape: [frames, bins] of the content spectrograms it will be called on.
        config: optimisation settings.
        matmul_dtype: the precision of the model's and the style loss's matmuls.
        content_model: a `FeatureModel` giving the content layers instead of `model` (None: `model`).
    """

    def __init__(self, model, style_log_magnitude: tf.Tensor, shape, config: configs.TransferConfig,
                 matmul_dtype: tf.DType, content_model=None):
        self.model, self.config, self.matmul_dtype = model, config, matmul_dtype
        self.content_model = content_model or model
        self.style_weights = _layer_weights(config.style_layers, model, "style")
        self.content_weights = _layer_weights(config.content_layers, self.content_model, "content")
        style = tf.convert_to_tensor(style_log_magnitude, tf.float32)[tf.newaxis]
        self.style_peak = float(tf.reduce_max(style))
        # Targets are constant across steps: computed once here, never inside the step.
        style_features = model.features(style)
        self.style_targets = {
            name: losses.StyleTarget(style_features[name], over=config.gram_over, frames=int(shape[0]),
                                     window=config.gram_window, explicit=config.explicit_gram,
                                     matmul_dtype=matmul_dtype)
            for name in self.style_weights
        }
        del style_features
        self.spectrogram = tf.Variable(tf.zeros([1, *shape]), name="log_magnitude")
        content_features = self.content_model.features(self.spectrogram)
        self.content_targets = {name: tf.Variable(tf.zeros_like(content_features[name]), name=f"content_{name}")
                                for name in self.content_weights}
        # log1p magnitudes are >= 0; the ceiling stops a runaway step from producing absurd levels.
        self.ceiling = tf.Variable(0.0, name="ceiling")
        self._adam_step = self._lbfgs_losses_and_gradient = None

    def compute_losses(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        """{total_loss, style_loss, content_loss, tv_loss, l2_loss} of log-magnitudes x [1, frames, bins]."""
        features = self.model.features(x)
        content_features = features if self.content_model is self.model else self.content_model.features(x)
        parts = {
            "style_loss": _weighted_mean(
                {n: losses.style_loss(features[n], self.style_targets[n]) for n in self.style_weights},
                self.style_weights),
            "content_loss": _weighted_mean(
                {n: losses.content_loss(content_features[n], self.content_targets[n]) for n in self.content_weights},
                self.content_weights),
            "tv_loss": losses.total_variation(x),
            "l2_loss": losses.l2_magnitude(x),
        }
        config = self.config
        weights = {"style_loss": config.style_weight, "content_loss": config.content_weight,
                   "tv_loss": config.tv_weight, "l2_loss": config.l2_weight}
        return {"total_loss": tf.add_n([weights[name] * value for name, value in parts.items()]), **parts}

    def __call__(self, content_log_magnitude: tf.Tensor, *,
                 on_step: Callable[[int, dict[str, float]], None] | None = None) -> TransferResult:
        """Optimises from (or towards) one content spectrogram [frames, bins] of the shape given at construction."""
        config = self.config
        content = tf.convert_to_tensor(content_log_magnitude, tf.float32)[tf.newaxis]
        content_features = self.content_model.features(content)
        for name, target in self.content_targets.items():
            target.assign(content_features[name])
        del content_features
        ceiling = max(float(tf.reduce_max(content)), self.style_peak)
        self.ceiling.assign(ceiling)
        if config.init == "content":
            initial = content
        else:
            noise = tf.abs(tf.random.stateless_normal(tf.shape(content), seed=[config.seed, 1]))
            initial = noise * tf.math.reduce_std(content)
        self.spectrogram.assign(tf.clip_by_value(initial, 0.0, ceiling))

        precision = self.matmul_dtype.name
        if config.optimizer == "lbfgs":
            history, switched = self._minimise_lbfgs(ceiling, on_step)
            if switched is not None:
                precision += f"; float32 from iteration {switched}"
        else:
            history = self._minimise_adam(on_step)
        result = self.spectrogram[0]
        if config.style_lifter:
            result = keep_envelope_change(result, content[0], config.style_lifter)
        if config.keep_loudness:
            result = match_frame_loudness(result, content[0])
        result = tf.clip_by_value(result, 0.0, ceiling)
        if config.style_lifter or config.keep_loudness:
            output_losses = {name: float(value) for name, value in self.compute_losses(result[tf.newaxis]).items()}
        else:
            output_losses = history[-1]
        return TransferResult(log_magnitude=result.numpy(), history=history, precision=precision,
                              output_losses=output_losses)

    def _minimise_adam(self, on_step) -> list[dict]:
        config, spectrogram = self.config, self.spectrogram
        if self._adam_step is None:
            import keras  # Deferred: only the optimiser needs it here.

            schedule = keras.optimizers.schedules.ExponentialDecay(
                config.learning_rate, decay_steps=config.steps, decay_rate=config.learning_rate_decay)
            self._adam = keras.optimizers.Adam(learning_rate=schedule)

            @tf.function
            def step() -> dict[str, tf.Tensor]:
                with tf.GradientTape() as tape:
                    step_losses = self.compute_losses(spectrogram)
                gradient = tape.gradient(step_losses["total_loss"], spectrogram)
                self._adam.apply_gradients([(gradient, spectrogram)])
                spectrogram.assign(tf.clip_by_value(spectrogram, 0.0, self.ceiling))
                return step_losses

            self._adam_step = step
        else:  # a fresh start: step count (and so the learning rate) and moments back to zero
            for variable in self._adam.variables:
                variable.assign(tf.zeros_like(variable))

        # Each step returns the losses of the point it started from, so step k + 1 tells those after k steps: the
        # callback for step k runs one step late, and the last one gets a final evaluation.
        history = []
        for index in range(config.steps + 1):
            if index < config.steps:
                step_losses = {name: float(value) for name, value in self._adam_step().items()}
            else:
                step_losses = {name: float(value) for name, value in self.compute_losses(spectrogram).items()}
            _check_finite(step_losses, index)
            history.append(step_losses)
            if on_step is not None and index > 0:
                on_step(index, step_losses)
        return history

    def _minimise_lbfgs(self, ceiling: float, on_step) -> tuple[list[dict], int | None]:
        """scipy's L-BFGS-B (the original method's optimiser) with [0, ceiling] as bounds instead of clipping.

        A loss with bfloat16 matmuls is good to a few digits only (its input is rounded to 8 bits, so it is flat
        over short steps); once the line search can no longer find a decrease, the run would end early. The
        matmuls then switch to float32 and the remaining iterations continue. Returns (the history, the
        iteration the switch happened at or None).
        """
        import scipy.optimize  # Deferred; scipy comes with librosa.

        config, spectrogram = self.config, self.spectrogram
        shape = spectrogram.shape
        history = [{name: float(value) for name, value in self.compute_losses(spectrogram).items()}]
        latest = {}

        def after_iteration(flat: np.ndarray) -> None:
            _check_finite(latest, len(history))
            history.append(dict(latest))  # the line search's last evaluation is the accepted point
            if on_step is not None:
                on_step(len(history) - 1, history[-1])

        def run(start: np.ndarray, iterations: int) -> np.ndarray:
            def value_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
                step_losses, gradient = self._lbfgs_traced()(tf.constant(flat.reshape(shape), tf.float32))
                latest.update({name: float(value) for name, value in step_losses.items()})
                return float(latest["total_loss"]), gradient.numpy().ravel().astype(np.float64)

            return scipy.optimize.minimize(
                value_and_gradient, start, jac=True, method="L-BFGS-B", bounds=scipy.optimize.Bounds(0.0, ceiling),
                callback=after_iteration,
                # No tolerance-based early stop: the relative losses have tiny gradients, and scipy's defaults
                # would end the run after a handful of iterations. `steps` decides.
                options={"maxiter": iterations, "maxfun": 2 * iterations + 20, "ftol": 0.0, "gtol": 0.0}).x

        solution = run(spectrogram.numpy().ravel().astype(np.float64), config.steps)
        remaining = config.steps - (len(history) - 1)
        switched = None
        if self.matmul_dtype == tf.bfloat16 and remaining > 0:
            switched = len(history) - 1
            self._to_float32()
            solution = run(solution, remaining)
        spectrogram.assign(solution.reshape(shape).astype(np.float32))
        return history, switched

    def _lbfgs_traced(self):
        """The loss and its gradient as one tf.function of the point, traced once (again after `_to_float32`)."""
        if self._lbfgs_losses_and_gradient is None:
            @tf.function
            def losses_and_gradient(x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    step_losses = self.compute_losses(x)
                return step_losses, tape.gradient(step_losses["total_loss"], x)

            self._lbfgs_losses_and_gradient = losses_and_gradient
        return self._lbfgs_losses_and_gradient

    def _to_float32(self) -> None:
        # For the rest of this optimiser's life (later chunks too), so that it is traced again only once.
        self.matmul_dtype = tf.float32
        self.model.use_bfloat16_matmuls(False)
        for target in self.style_targets.values():
            target.use_matmul_dtype(tf.float32)
        self._lbfgs_losses_and_gradient = None


def _weighted_mean(values: Mapping[str, tf.Tensor], weights: Mapping[str, float]) -> tf.Tensor:
    return tf.add_n([weights[name] * values[name] for name in weights]) / sum(weights.values())


def keep_envelope_change(result: tf.Tensor, content: tf.Tensor, lifter: int) -> tf.Tensor:
    """content + the spectral envelope of (result - content): the change's cepstrum below quefrency `lifter`.

    Log-magnitudes [frames, bins]. What the optimisation did to the envelope (timbre, formants) stays; what it did
    to the fine structure (harmonics: pitch, notes) is undone.
    """
    return content + spectral_ops.spectral_envelope(result - content, lifter)


def match_frame_loudness(result: tf.Tensor, content: tf.Tensor) -> tf.Tensor:
    """log1p-magnitudes [frames, bins] of `result` with each frame scaled to the norm of the content's frame."""
    magnitude, reference = tf.math.expm1(tf.maximum(result, 0.0)), tf.math.expm1(content)
    gain = tf.norm(reference, axis=-1, keepdims=True) / tf.maximum(tf.norm(magnitude, axis=-1, keepdims=True), 1e-6)
    return tf.math.log1p(magnitude * gain)


def _check_finite(step_losses: dict[str, float], done: int) -> None:
    if not np.isfinite(step_losses["total_loss"]):
        raise InputError(f"optimisation diverged at step {done} (loss is {step_losses['total_loss']}); "
                         "lower --learning_rate")
