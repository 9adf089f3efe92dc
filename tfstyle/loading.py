"""Finding and loading models: shipped SavedModels, any SavedModel, training runs, zoo models built in memory.

The commands (transfer, evaluate, export) all load through here, so a `--model` value means the same to each:

    conv_ae                       the newest shipped saved_models/conv_ae/<version>/ (package data once installed)
    random_cnn                    built in memory: it has no weights, and the in-memory one keeps its filters
    PATH/TO/saved_models/conv_ae  a SavedModel version folder, or a folder of versions (the newest is taken)

A zoo name with no shipped SavedModel is an error unless untrained weights are asked for explicitly.
"""

import dataclasses
import json
import os
from typing import Any

import tensorflow as tf

import tfstyle
from tfstyle import configs, registry
from tfstyle.errors import InputError

INFO_ASSET = "tfstyle_model.json"  # the exported model's name, config, signal settings and split, in assets/

# Output keys of exports made before every model used the same ones (models.base.SIGNATURE_OUTPUTS).
_OLD_OUTPUT_KEYS = {
    "serving_default": {"latent_mean": "embedding"},
    "encode": {"latent_mean": "code", "latent_log_variance": "code_log_variance", "embedding": "code"},
    "decode": {"log_magnitude": "decoded", "style_features": "decoded"},
    "reconstruct": {"log_magnitude": "reconstruction", "log_mel": "reconstruction", "style_features": "reconstruction"},
}


def shipped_models_dir() -> str:
    """Where the released SavedModels are: $TFSTYLE_SAVED_MODELS, else inside the installed package
    (setup.py maps the repository's saved_models/ there), else beside the package in a source checkout."""
    if os.environ.get("TFSTYLE_SAVED_MODELS"):
        return os.environ["TFSTYLE_SAVED_MODELS"]
    package = os.path.dirname(os.path.abspath(tfstyle.__file__))
    installed = os.path.join(package, "saved_models")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package), "saved_models")


def versions(folder: str) -> list[int]:
    """The integer version sub-folders of a folder of SavedModel versions, ascending."""
    return sorted(int(d) for d in os.listdir(folder) if d.isdigit()) if os.path.isdir(folder) else []


def shipped_model_path(name: str) -> str | None:
    """saved_models/<name>/<newest version> if tfstyle ships `name`, else None."""
    folder = os.path.join(shipped_models_dir(), name)
    found = versions(folder)
    return os.path.join(folder, str(found[-1])) if found else None


class LoadedModel:
    """A tfstyle SavedModel, with the same `features` interface as the in-memory zoo models.

    Attributes:
        name: the zoo name it was exported from.
        path: the version folder it was loaded from.
        info: the exported tfstyle_model.json (config, sample rate, STFT settings, layers, signatures, split).
        saved_model: what tf.saved_model.load returned.
    """

    def __init__(self, path: str):
        if not os.path.isdir(path):
            raise InputError(f"{path}: no such SavedModel folder")
        found = versions(path)
        if not os.path.exists(os.path.join(path, "saved_model.pb")) and found:
            path = os.path.join(path, str(found[-1]))  # a TF Serving base path: take the newest
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise InputError(f"{path}: not a SavedModel (no saved_model.pb; half-copied?)")
        info_path = os.path.join(path, "assets", INFO_ASSET)
        if not os.path.isfile(info_path):
            raise InputError(f"{path}: a SavedModel, but not one exported by tfstyle (no assets/{INFO_ASSET})")
        with open(info_path) as f:
            self.info = json.load(f)
        try:
            self.saved_model = tf.saved_model.load(path)
        except Exception as e:  # noqa: BLE001  (corrupt protobufs and variables raise many kinds)
            message = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise InputError(f"{path}: cannot load SavedModel (corrupt or half-copied?): {message}") from None
        if not self.has_signature("features"):
            raise InputError(f"{path}: SavedModel has no features signature")
        self.path = path
        self.name = self.info["model"]
        self.feature_layer_names = tuple(self.info["feature_layers"])

    @property
    def spec(self) -> registry.ModelSpec:
        return registry.lookup(self.name)

    def feature_roles(self) -> dict[str, str]:
        """{feature layer: "style" | "content"} as exported; an export from before roles were recorded gets its
        model's (every layer one role)."""
        recorded = self.info.get("feature_roles")
        if recorded:
            return dict(recorded)
        return {name: self.spec.model_class.FEATURE_ROLE for name in self.feature_layer_names}

    def has_signature(self, name: str) -> bool:
        return name in self.info.get("signatures", [])

    def signature(self, name: str):
        """The exported function `name` (e.g. "reconstruct"): called with tensors, it returns a dict with the
        output keys every model has today (an export from before they were made consistent is renamed)."""
        function = getattr(self.saved_model, name)
        renames = _OLD_OUTPUT_KEYS.get(name, {})
        return lambda *args: {renames.get(key, key): value for key, value in function(*args).items()}

    def features(self, log_magnitude):
        # The frame count is hidden from the graph on purpose: with it known, Grappler's constant folding (TF 2.17)
        # folds the shapes inside a loaded function's gradient wrongly for a dilated convolution followed by a
        # strided one, and dilated_conv_ae's gradient fails with "Size of out_backprop doesn't match computed".
        hidden = tf.raw_ops.PlaceholderWithDefault(
            input=log_magnitude, shape=[None, None, log_magnitude.shape[-1]])
        return self.saved_model.features(hidden)

    def recombine(self, content_waveform, style_waveform):
        return self.signature("recombine")(content_waveform, style_waveform)["log_magnitude"]

    def signal_config(self) -> dict:
        return {key: self.info[key] for key in ("sample_rate", "frame_length", "frame_step")}


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    """A model ready to use, and where it came from.

    Attributes:
        name: the zoo name.
        model: an in-memory zoo model or a LoadedModel; either has `features` and `feature_layer_names`.
        source: "shipped", "saved_model", "training_run", "built_in" (no weights to load) or "untrained".
        path: the SavedModel or training run it was loaded from ("" for the others).
    """

    name: str
    model: Any
    source: str
    path: str = ""

    @property
    def spec(self) -> registry.ModelSpec:
        return registry.lookup(self.name)


def is_saved_model_path(model: str) -> bool:
    """Whether a --model value is the path of a SavedModel (or of a folder of versions) rather than a zoo name."""
    return os.sep in model or os.path.isdir(model)


def load_model(model: str, *, untrained: bool = False) -> ResolvedModel:
    """Resolves a --model value: a zoo name (its newest shipped SavedModel) or a SavedModel path.

    Args:
        model: a zoo name or a path.
        untrained: build a trainable zoo model with fresh random weights instead of loading the shipped ones.

    Raises:
        InputError: an unknown name, a path that is not a tfstyle SavedModel, or a zoo name that is not shipped.
    """
    if is_saved_model_path(model):
        if untrained:
            raise InputError("--untrained takes a zoo name, not a SavedModel path")
        loaded = LoadedModel(model)
        registry.lookup(loaded.name)
        return ResolvedModel(loaded.name, loaded, "saved_model", loaded.path)
    spec = registry.lookup(model)
    if not spec.trainable:  # nothing to load: the same function in memory, at any rate
        return ResolvedModel(model, registry.build_model(model), "built_in")
    if untrained:
        return ResolvedModel(model, registry.build_model(model), "untrained")
    shipped = shipped_model_path(model)
    if shipped is None:
        raise InputError(f"no shipped SavedModel for {model} under {shipped_models_dir()}; pass "
                         "--model=PATH/TO/SAVED_MODEL, or --untrained for random weights")
    return ResolvedModel(model, LoadedModel(shipped), "shipped", shipped)


def load_training_run(model_dir: str) -> tuple[configs.ExperimentConfig, ResolvedModel]:
    """(config, model) of a training run: the model built from its config.json with the newest checkpoint."""
    path = os.path.join(model_dir, configs.EXPERIMENT_CONFIG_FILE)
    if not os.path.isfile(path):
        raise InputError(f"{model_dir} is not a training run (no {configs.EXPERIMENT_CONFIG_FILE})")
    with open(path) as f:
        experiment = configs.ExperimentConfig.from_json(f.read())
    model = registry.build_model(experiment.model, experiment.model_config)
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if latest is None:
        raise InputError(f"{model_dir} has no checkpoint yet")
    tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    return experiment, ResolvedModel(experiment.model, model, "training_run", model_dir)
