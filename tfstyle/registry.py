"""The model zoo's registry: every model registers itself under its snake_case name.

    @register_model("random_cnn", RandomCNNConfig)
    class RandomCNN(keras.Model): ...

    model = build_model("random_cnn", n_filters=256)
"""

import dataclasses
import importlib
from typing import Any, Callable, TypeVar

from tfstyle.errors import InputError

_ModelClass = TypeVar("_ModelClass", bound=type)


TRANSFER_KINDS = ("gradient", "recombine", "none")
DEFAULT_TRANSFER_MODEL = "random_cnn"  # needs no weights and works at any sample rate


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of one zoo entry: its class, its config dataclass, and what it can do.

    Attributes:
        name: the zoo name (snake_case, the CLI value).
        model_class: built as `model_class(**dataclasses.asdict(config))`.
        config_class: the frozen config dataclass.
        trainable: whether `tfstyle.train` has weights to learn (the random CNN has none).
        any_sample_rate: whether the model works at any rate (the random CNN); otherwise at its config's.
        transfer: "gradient" (features to optimise a spectrogram against), "recombine" (one forward pass from a
            content and a style clip), or "none".
        no_transfer_reason: for transfer "none", why, in a sentence a user sees.
    """

    name: str
    model_class: type
    config_class: type
    trainable: bool = True
    any_sample_rate: bool = False
    transfer: str = "gradient"
    no_transfer_reason: str = ""


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, config_class: type, **capabilities: Any) -> Callable[[_ModelClass], _ModelClass]:
    """Class decorator registering a model class; `capabilities` are ModelSpec fields (trainable, transfer, ...)."""

    def decorator(model_class: _ModelClass) -> _ModelClass:
        if name in _MODELS:
            raise KeyError(f"model {name!r} is already registered by {_MODELS[name].model_class.__name__}")
        spec = ModelSpec(name, model_class, config_class, **capabilities)
        if spec.transfer not in TRANSFER_KINDS or (spec.transfer == "none") != bool(spec.no_transfer_reason):
            raise ValueError(f"model {name!r}: transfer must be one of {TRANSFER_KINDS}, with a reason for 'none'")
        _MODELS[name] = spec
        return model_class

    return decorator


def _import_zoo() -> None:
    # Importing the package runs each model module's @register_model; done lazily because the models import us.
    importlib.import_module("tfstyle.models")


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _import_zoo()
    return sorted(_MODELS)


def lookup(name: str) -> ModelSpec:
    """The registered spec for `name`; an unknown name raises InputError listing the known ones."""
    _import_zoo()
    if name not in _MODELS:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name]


def build_model(name: str, config: Any = None, **overrides: Any):
    """Builds the zoo model `name` from `config` (default: its config class's defaults) with field `overrides`."""
    spec = lookup(name)
    config = spec.config_class() if config is None else config
    if not isinstance(config, spec.config_class):
        raise TypeError(f"model {name!r} takes a {spec.config_class.__name__}, got {type(config).__name__}")
    config = dataclasses.replace(config, **overrides)
    return spec.model_class(**dataclasses.asdict(config))
