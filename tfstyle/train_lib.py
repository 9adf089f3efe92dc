"""Training as a function of a config (no flags here): `train(experiment, model_dir)`.

A model directory holds:
  config.json        the configs.ExperimentConfig (model name and config, data, training)
  checkpoints/       model, optimiser and step; a rerun of the same command resumes from the newest one
  train/, validation/  TensorBoard events: losses and learning rate; input and reconstruction spectrograms and audio

One step is a tf.function around `model.compute_losses(batch, training=True)` under a tf.distribute strategy, so the
same loop runs on one CPU, on several local devices (MirroredStrategy) or across machines
(MultiWorkerMirroredStrategy, configured by TF_CONFIG).
"""

import json
import os
import signal
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tfstyle import configs, fileutil, registry, spectral_ops
from tfstyle.errors import InputError

CONFIG_FILE = configs.EXPERIMENT_CONFIG_FILE


def trainable_models() -> list[str]:
    """Registered models that have something to train (all but the random CNN)."""
    return [name for name in registry.list_models() if registry.lookup(name).trainable]


def make_strategy(name: str, cpu_devices: int = 1) -> tf.distribute.Strategy:
    """The tf.distribute strategy called `name`; `cpu_devices` > 1 splits the CPU into logical devices first."""
    if cpu_devices > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
        except RuntimeError:  # already initialised: keep what is there
            pass
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise InputError(f"unknown strategy {name!r}")


def _check_resumable(model_dir: str, experiment: configs.ExperimentConfig) -> None:
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    wanted = json.loads(experiment.to_json())
    for part in ("model", "model_config"):
        if saved.get(part) != wanted[part]:
            raise InputError(f"{model_dir} holds a run of {saved.get('model')} with another configuration; "
                             "use a new --model_dir (or the run's own settings) to train")


def _spectrogram_images(spectrograms: tf.Tensor, limit: int = 2) -> tf.Tensor:
    # [batch, frames, bins] -> [batch, bins, frames, 1] with low frequencies at the bottom, scaled to [0, 1].
    images = tf.reverse(tf.transpose(spectrograms[:limit], [0, 2, 1]), axis=[1])[..., tf.newaxis]
    return tf.clip_by_value(images / tf.maximum(tf.reduce_max(images), 1e-6), 0.0, 1.0)


def train(experiment: configs.ExperimentConfig, model_dir: str, *, log: Callable[[str], None] = print,
          on_step: Callable[[int, str], None] | None = None) -> dict:
    """Trains (or resumes training) `experiment` in `model_dir`; returns a summary of the run.

    `log` gets one-line messages; `on_step(steps done, status text)` is called after every step (e.g. a
    tfstyle.progress.Progress).

    Raises:
        InputError: on a bad data folder or a model_dir holding a different run.
        KeyboardInterrupt: after saving a checkpoint, when interrupted (Ctrl-C or SIGTERM).
    """
    train_config = experiment.train
    _check_resumable(model_dir, experiment)
    os.makedirs(model_dir, exist_ok=True)
    strategy = make_strategy(train_config.strategy, train_config.cpu_devices)
    dataset = registry.lookup(experiment.model).model_class.training_data(experiment.data)
    replicas = strategy.num_replicas_in_sync
    if train_config.batch_size % replicas:
        raise InputError(f"batch_size {train_config.batch_size} does not split evenly over {replicas} replicas")

    with strategy.scope():
        model = registry.build_model(experiment.model, experiment.model_config)
        optimizer = keras.optimizers.Adam(train_config.learning_rate)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, "checkpoints"), max_to_keep=3)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        log(f"resuming {experiment.model} from step {int(step.numpy())} ({manager.latest_checkpoint})")
    # config.json is written once the run is known to be valid, atomically, as every output.
    fileutil.write_files_atomically({os.path.join(model_dir, CONFIG_FILE): experiment.to_json().encode()})

    start_step = int(step.numpy())
    if start_step >= train_config.steps:
        log(f"already trained to step {start_step} (>= --steps={train_config.steps}); nothing to do")
        return {"model": experiment.model, "step": start_step, "trained_steps": 0}

    train_batches = strategy.experimental_distribute_dataset(dataset.train(train_config.batch_size))
    iterator = iter(train_batches)

    @tf.function
    def train_step(iterator):
        def step_fn(batch):
            with tf.GradientTape() as tape:
                losses = model.compute_losses(batch, training=True)
                scaled = losses["total_loss"] / replicas  # the optimiser sums gradients over replicas
            gradients = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return losses

        per_replica = strategy.run(step_fn, args=(next(iterator),))
        step.assign_add(1)
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for name, value in per_replica.items()}

    @tf.function
    def evaluation_losses(batch):
        return model.compute_losses(batch, training=False)

    def validate() -> float | None:
        totals = [float(evaluation_losses(batch)["total_loss"]) for batch in
                  dataset.validation(max(1, train_config.batch_size // replicas))]
        return float(np.mean(totals)) if totals else None

    train_writer = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
    validation_writer = tf.summary.create_file_writer(os.path.join(model_dir, "validation"))
    preview_batch = next(iter(dataset.validation(2)), None) or next(iter(dataset.train(2)))

    def write_previews(at_step: int) -> None:
        spectrograms = model.summary_spectrograms(preview_batch)
        with train_writer.as_default(step=at_step):
            for name, spectrogram in spectrograms.items():
                tf.summary.image(f"spectrogram/{name}", _spectrogram_images(spectrogram))
                waveform = spectral_ops.griffin_lim(
                    spectral_ops.magnitude_from_log(spectrogram[:2]), n_iter=32,
                    frame_length=experiment.data.frame_length, frame_step=experiment.data.frame_step)
                tf.summary.audio(f"audio/{name}", waveform[..., tf.newaxis], experiment.data.sample_rate)

    # Ctrl-C or SIGTERM (a scheduler's notice) ends the run after the current step and its validation: raising
    # from the handler mid-step abandoned tf.data iterators with decodes in flight, and once crashed the process
    # (heap corruption) before the checkpoint was written. A second signal stops at once.
    stop_signals = []

    def on_stop_signal(signum, frame):
        if stop_signals:
            raise KeyboardInterrupt
        stop_signals.append(signum)

    previous_handlers = {s: signal.signal(s, on_stop_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    log(f"training {experiment.model} on {len(dataset.split.train)} files ({len(dataset.split.validation)} held "
        f"out for validation) with {replicas} replica(s), steps {start_step} -> {train_config.steps}")
    started = time.perf_counter()
    losses = {}
    validation_loss = None
    try:
        while int(step.numpy()) < train_config.steps and not stop_signals:
            losses = {name: float(value) for name, value in train_step(iterator).items()}
            done = int(step.numpy())
            if not np.isfinite(losses["total_loss"]):
                raise InputError(f"training diverged at step {done} (loss {losses['total_loss']}); "
                                 "lower --learning_rate")
            if on_step is not None:
                on_step(done, f"loss {losses['total_loss']:.4g}" +
                        (f"  validation {validation_loss:.4g}" if validation_loss is not None else ""))
            if done % train_config.summary_every == 0 or done == train_config.steps:
                with train_writer.as_default(step=done):
                    for name, value in losses.items():
                        tf.summary.scalar(f"loss/{name}", value)
                    tf.summary.scalar("learning_rate", train_config.learning_rate)
            if done % (10 * train_config.summary_every) == 0 or done == train_config.steps:
                write_previews(done)
            if done % train_config.validation_every == 0 or done == train_config.steps:
                validation_loss = validate()
                if validation_loss is not None:
                    with validation_writer.as_default(step=done):
                        tf.summary.scalar("loss/total_loss", validation_loss)
            if done % train_config.checkpoint_every == 0 or done == train_config.steps:
                manager.save(checkpoint_number=done)
        if stop_signals:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        manager.save(checkpoint_number=int(step.numpy()))
        log(f"interrupted: saved a checkpoint at step {int(step.numpy())}; rerun the same command to resume")
        raise KeyboardInterrupt from None
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        train_writer.flush()
        validation_writer.flush()

    summary = {
        "model": experiment.model,
        "step": int(step.numpy()),
        "trained_steps": int(step.numpy()) - start_step,
        "seconds": round(time.perf_counter() - started, 1),
        "final_losses": losses,
        "validation_loss": validation_loss,
        "skipped_files": len(dataset.skipped),
        "checkpoint": manager.latest_checkpoint,
    }
    if dataset.skipped:
        log(f"warning: skipped {len(dataset.skipped)} unreadable file(s), e.g. {dataset.skipped[0]}")
    return summary
