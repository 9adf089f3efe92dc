"""Exports a zoo model as a SavedModel that TF Serving can load (tfstyle.loading loads it back).

    python -m tfstyle.export --model_dir=RUN --export_dir=saved_models/conv_ae
    python -m tfstyle.export --model=random_cnn --export_dir=saved_models/random_cnn

writes EXPORT_DIR/<next integer version>/ with these signatures, each over TensorSpecs with free batch and length:

    serving_default(waveform [batch, samples] at the model's rate)  -> {"embedding": ...}
    features(log_magnitude [batch, frames, bins])                   -> {layer name: activations}, differentiable
    encode / decode / reconstruct                                   -> {"code"} / {"decoded"} / {"reconstruction"}
    recombine(content_waveform, style_waveform)                     -> {"log_magnitude"}: content of one, style of
                                                                       the other (models that recombine)

The output keys are the same for every model (tfstyle.models.base.SIGNATURE_OUTPUTS). The model's name, config,
sample rate and STFT settings travel as the asset `tfstyle_model.json`. Only core
TensorFlow ops are inside (tf.signal for the STFT; the random CNN regenerates its filters from their seed with the
stateless Philox generator, so its SavedModel holds no weights at all). Exports are written to a hidden temporary
folder and renamed into place, so a server polling EXPORT_DIR never sees half a model.
"""

import dataclasses
import json
import os
import shutil
import sys
import tempfile

import tensorflow as tf
from absl import flags

from tfstyle import cli, configs, fileutil, loading, registry, spectral_ops
from tfstyle.errors import InputError


def next_version(export_dir: str) -> int:
    """1 + the largest integer version folder in export_dir (1 for a new one)."""
    return max(loading.versions(export_dir), default=0) + 1


def export_saved_model(name: str, model, config, export_dir: str, *, data_config: configs.DataConfig | None = None
                       ) -> str:
    """Writes model `name` (its zoo config `config`) to export_dir/<next version>/ and returns that path.

    `data_config`, for a trained model, records the split it was trained with, so that evaluate holds out the same
    files.
    """
    if registry.lookup(name).any_sample_rate:  # works at any rate; the signatures are built for this STFT
        signal = {"sample_rate": None, "frame_length": spectral_ops.FRAME_LENGTH, "frame_step": spectral_ops.FRAME_STEP}
    else:
        signal = model.signal_config()
    functions = model.serving_functions(signal)
    info = {"model": name, "config": dataclasses.asdict(config), **signal,
            "bins": signal["frame_length"] // 2 + 1, "feature_layers": list(model.feature_layer_names),
            "feature_roles": model.feature_roles(), "signatures": sorted(functions)}
    if data_config is not None:
        info["split"] = configs.split_of(data_config)
    os.makedirs(export_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tmp-export-", dir=export_dir)
    try:
        info_path = os.path.join(staging, loading.INFO_ASSET)
        with open(info_path, "w") as f:
            json.dump(info, f, indent=2)
        module = tf.Module()
        if model.EXPORTS_WEIGHTS:
            module.model = model
        module.info = tf.saved_model.Asset(info_path)
        for function_name, function in functions.items():
            setattr(module, function_name, function)
        saved = os.path.join(staging, "model")
        tf.saved_model.save(module, saved, signatures={k: f.get_concrete_function() for k, f in functions.items()})
        version = next_version(export_dir)
        destination = os.path.join(export_dir, str(version))
        os.rename(saved, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def models_config(saved_models_dir: str, *, base_path: str = "/models") -> str:
    """TF Serving's model config (text format) listing every model folder with integer versions in the dir.

    `base_path` is where the server sees saved_models_dir (e.g. the mount point in its container).
    """
    names = sorted(d for d in os.listdir(saved_models_dir)
                   if os.path.isdir(os.path.join(saved_models_dir, d)) and next_version(
                       os.path.join(saved_models_dir, d)) > 1)
    entries = "".join(f'  config {{\n    name: "{name}"\n    base_path: "{base_path}/{name}"\n'
                      f'    model_platform: "tensorflow"\n  }}\n' for name in names)
    return "model_config_list {\n" + entries + "}\n"


def _define_flags() -> None:
    # Defined only when this module runs as the export command: the transfer command imports it as a library
    # and has flags of the same names.
    flags.DEFINE_string("model_dir", None, "Training run to export (python -m tfstyle.train --model_dir).")
    flags.DEFINE_string("model", None, "Zoo model to export untrained instead (random_cnn).")
    flags.DEFINE_string("export_dir", None, "Folder of versions, e.g. saved_models/conv_ae; the export goes in the "
                        "next integer version.")
    flags.DEFINE_string("model_config", "{}", "JSON overrides of the zoo config with --model.")
    flags.DEFINE_bool("models_config", True, "Rewrite models.config (TF Serving's model list) beside --export_dir.")


FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    if not FLAGS.export_dir:
        raise InputError("--export_dir is required")
    if bool(FLAGS.model_dir) == bool(FLAGS.model):
        raise InputError("pass exactly one of --model_dir (a training run) or --model (an untrained zoo model)")
    data_config = None
    if FLAGS.model_dir:
        experiment, resolved = loading.load_training_run(FLAGS.model_dir)
        name, model, config, data_config = experiment.model, resolved.model, experiment.model_config, experiment.data
    else:
        spec = registry.lookup(FLAGS.model)
        try:
            config = configs.from_json(spec.config_class, FLAGS.model_config)
        except json.JSONDecodeError as e:
            raise InputError(f"--model_config is not valid JSON: {e}") from None
        name, model = FLAGS.model, registry.build_model(FLAGS.model, config)
    destination = export_saved_model(name, model, config, FLAGS.export_dir, data_config=data_config)
    print(f"tfstyle: exported {name} to {destination}", file=sys.stderr)
    if FLAGS.models_config:
        parent = os.path.dirname(os.path.abspath(FLAGS.export_dir))
        config_path = os.path.join(parent, "models.config")
        fileutil.write_files_atomically({config_path: models_config(parent).encode()})
        print(f"tfstyle: listed it in {config_path}", file=sys.stderr)
    print(destination)


def run(argv: list[str] | None = None) -> None:
    _define_flags()
    cli.run(main, argv)


if __name__ == "__main__":
    run()
