"""Trains a zoo model on a folder of audio.

    python -m tfstyle.train --model=conv_ae --data_dir=DIR --model_dir=OUT [--steps=N] [--batch_size=B]
    python -m tfstyle.train --flagfile=training/conv_ae.flags --data_dir=DIR

Rerunning the same command resumes from the newest checkpoint in OUT. TensorBoard: tensorboard --logdir=OUT.
"""

import dataclasses
import json
import sys

from absl import flags

from tfstyle import cli, configs, data, progress, registry, train_lib
from tfstyle.errors import InputError

_DATA = configs.DataConfig()
_TRAIN = configs.TrainConfig()

def _define_flags() -> None:
    # Defined when the module runs as a command, not on import: the commands share flag names, and tests
    # import several of them as libraries.
    flags.DEFINE_string("model", None, "Model to train: one of " + ", ".join(train_lib.trainable_models()) + ".")
    flags.DEFINE_string("data_dir", None, "Dataset folder (see --layout).")
    flags.DEFINE_string("model_dir", None, "Where config.json, checkpoints and TensorBoard events go.")
    flags.DEFINE_enum("layout", _DATA.layout, list(data.LAYOUTS), "How the dataset folder is organised.")
    flags.DEFINE_string("manifest", "", "CSV with path and label columns (layout 'manifest').")
    flags.DEFINE_string("label_column", "", "Manifest column the split keeps disjoint (e.g. melody_id).")
    flags.DEFINE_string("model_config", "{}", 'JSON overrides of the model config, e.g. \'{"filters": [8, 8, 8, 8]}\'.')
    flags.DEFINE_integer("sample_rate", None, "Resample the data to this rate; default: the model config's.")
    flags.DEFINE_float("clip_seconds", _DATA.clip_seconds, "Length of each training clip.")
    flags.DEFINE_float("validation_fraction", _DATA.validation_fraction, "Share of labels held out for validation.")
    flags.DEFINE_bool("augment", _DATA.augment, "Time stretch, pitch shift and noise on training clips.")
    flags.DEFINE_float("time_stretch", _DATA.time_stretch, "Maximum relative time stretch (0 disables).")
    flags.DEFINE_float("pitch_shift_semitones", _DATA.pitch_shift_semitones, "Maximum pitch shift (0 disables).")
    flags.DEFINE_float("noise_stddev", _DATA.noise_stddev, "Standard deviation of added noise (0 disables).")
    flags.DEFINE_integer("seed", _DATA.seed, "Seed of the split, clips and augmentation.")
    flags.DEFINE_integer("steps", _TRAIN.steps, "Total training steps.")
    flags.DEFINE_integer("batch_size", _TRAIN.batch_size, "Global batch size.")
    flags.DEFINE_float("learning_rate", _TRAIN.learning_rate, "Adam's learning rate.")
    flags.DEFINE_integer("checkpoint_every", _TRAIN.checkpoint_every, "Steps between checkpoints.")
    flags.DEFINE_integer("summary_every", _TRAIN.summary_every, "Steps between TensorBoard scalars.")
    flags.DEFINE_integer("validation_every", _TRAIN.validation_every, "Steps between validation passes.")
    flags.DEFINE_enum("strategy", _TRAIN.strategy, ["default", "mirrored", "multi_worker_mirrored"],
                      "tf.distribute strategy; multi_worker_mirrored reads TF_CONFIG.")
    flags.DEFINE_integer("cpu_devices", _TRAIN.cpu_devices, "Split the CPU into this many logical devices.")


FLAGS = flags.FLAGS


def experiment_from_flags() -> configs.ExperimentConfig:
    for name in ("model", "data_dir", "model_dir"):
        if not FLAGS[name].value and not (name == "data_dir" and FLAGS.manifest):
            raise InputError(f"--{name} is required")
    if FLAGS.model not in train_lib.trainable_models():
        registry.lookup(FLAGS.model)  # unknown names get the registry's message
        raise InputError(f"{FLAGS.model} has nothing to train; trainable: {', '.join(train_lib.trainable_models())}")
    spec = registry.lookup(FLAGS.model)
    try:
        overrides = json.loads(FLAGS.model_config)
    except json.JSONDecodeError as e:
        raise InputError(f"--model_config is not valid JSON: {e}") from None
    if not isinstance(overrides, dict):
        raise InputError("--model_config must be a JSON object")
    if FLAGS.sample_rate:
        overrides["sample_rate"] = FLAGS.sample_rate
    model_config = configs.from_json(spec.config_class, json.dumps(
        {**dataclasses.asdict(spec.config_class()), **overrides}))
    data_config = configs.DataConfig(
        data_dir=FLAGS.data_dir or "", layout=FLAGS.layout, manifest=FLAGS.manifest,
        label_column=FLAGS.label_column,
        sample_rate=model_config.sample_rate, frame_length=model_config.frame_length,
        frame_step=model_config.frame_step, clip_seconds=FLAGS.clip_seconds,
        validation_fraction=FLAGS.validation_fraction, seed=FLAGS.seed, augment=FLAGS.augment,
        time_stretch=FLAGS.time_stretch, pitch_shift_semitones=FLAGS.pitch_shift_semitones,
        noise_stddev=FLAGS.noise_stddev)
    train_config = configs.TrainConfig(
        steps=FLAGS.steps, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
        checkpoint_every=FLAGS.checkpoint_every, summary_every=FLAGS.summary_every,
        validation_every=FLAGS.validation_every, strategy=FLAGS.strategy, cpu_devices=FLAGS.cpu_devices)
    return configs.ExperimentConfig(FLAGS.model, model_config, data_config, train_config)


def main(argv: list[str]) -> None:
    del argv
    experiment = experiment_from_flags()
    summary = train_lib.train(experiment, FLAGS.model_dir, log=lambda line: print(line, file=sys.stderr),
                              on_step=progress.Progress(experiment.train.steps))
    print(json.dumps(summary, indent=2))


def run(argv: list[str] | None = None) -> None:
    _define_flags()
    cli.run(main, argv)


if __name__ == "__main__":
    run()
