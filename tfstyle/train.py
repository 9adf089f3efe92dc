"""Trains a zoo model on a folder of audio.

    python -m tfstyle.train --model=conv_ae --data_dir=DIR --model_dir=OUT [--steps=N] [--batch_size=B]
    python -m tfstyle.train --flagfile=training/conv_ae.flags --data_dir=DIR

Rerunning the same command resumes from the newest checkpoint in OUT. TensorBoard: tensorboard --logdir=OUT.
"""

import dataclasses
import json
import sys

from absl import flags

from tfstyle import cli, config_flags, configs, progress, registry, train_lib
from tfstyle.errors import InputError

# Data fields that come from elsewhere: the folder from --data_dir, the signal from the model's config.
_DATA_NOT_FLAGS = ("data_dir", "sample_rate", "frame_length", "frame_step")


def _define_flags() -> None:
    # Defined when the module runs as a command, not on import: the commands share flag names, and tests
    # import several of them as libraries. The data and training flags come from their config dataclasses.
    flags.DEFINE_string("model", None, "Model to train: one of " + ", ".join(train_lib.trainable_models()) + ".")
    flags.DEFINE_string("data_dir", None, "Dataset folder (see --layout).")
    flags.DEFINE_string("model_dir", None, "Where config.json, checkpoints and TensorBoard events go.")
    flags.DEFINE_string("model_config", "{}", 'JSON overrides of the model config, e.g. \'{"filters": [8, 8, 8, 8]}\'.')
    flags.DEFINE_integer("sample_rate", None, "Resample the data to this rate; default: the model config's.")
    config_flags.define(configs.DataConfig, exclude=_DATA_NOT_FLAGS)
    config_flags.define(configs.TrainConfig)


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
    data_config = config_flags.build(
        configs.DataConfig, FLAGS, data_dir=FLAGS.data_dir or "", sample_rate=model_config.sample_rate,
        frame_length=model_config.frame_length, frame_step=model_config.frame_step)
    train_config = config_flags.build(configs.TrainConfig, FLAGS)
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
