"""Frozen configuration dataclasses, one per zoo model, with a JSON round trip."""

import dataclasses
import json
from typing import Any, TypeVar

from tfstyle.errors import InputError

_Config = TypeVar("_Config")


@dataclasses.dataclass(frozen=True)
class RandomCNNConfig:
    """The untrained wide-shallow CNN (Ulyanov & Lebedev 2016).

    Attributes:
        n_filters: random filters in the one 1-D convolution over time; the Gram matrix is n_filters x n_filters.
        kernel_width: filter width in STFT frames (11 frames = 255 ms at hop 512, 22.05 kHz).
        seed: seed of the random filters; the same seed gives the same features on every machine.
    """

    n_filters: int = 4096
    kernel_width: int = 11
    seed: int = 0

    def __post_init__(self):
        _require_positive(self, "n_filters", "kernel_width")


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Settings of the style-transfer optimisation (see tfstyle.transfer).

    Attributes:
        steps: optimiser steps.
        learning_rate: Adam's initial step size, in log1p-magnitude units.
        learning_rate_decay: the learning rate is multiplied by this over the whole run (exponential decay).
        init: "content" starts from the content spectrogram, "noise" from seeded noise of the content's level.
        content_weight: weight of the content loss; 0 gives style only (keeping the content through `init`).
        style_weight: weight of the style loss.
        content_layers / style_layers: feature layer -> weight; empty means every feature layer of the model,
            weight 1.
        gram_over: "time" or "time_frequency" (see tfstyle.losses.gram_matrix).
        tv_weight: weight of the total-variation penalty on the optimised log-magnitude.
        l2_weight: weight of the L2 magnitude penalty.
        griffin_lim_iters: phase-retrieval iterations for the output waveform.
        griffin_lim_momentum: 0.99 is fast Griffin-Lim, 0 the classic algorithm.
        seed: seeds the noise init and Griffin-Lim's initial phase.
    """

    steps: int = 100
    learning_rate: float = 0.1
    learning_rate_decay: float = 0.1
    init: str = "content"
    content_weight: float = 0.0
    style_weight: float = 1.0
    content_layers: tuple[tuple[str, float], ...] = ()
    style_layers: tuple[tuple[str, float], ...] = ()
    gram_over: str = "time"
    tv_weight: float = 0.0
    l2_weight: float = 0.0
    griffin_lim_iters: int = 100
    griffin_lim_momentum: float = 0.99
    seed: int = 0

    def __post_init__(self):
        _require_positive(self, "steps")
        if self.init not in ("content", "noise"):
            raise InputError(f"init must be 'content' or 'noise', got {self.init!r}")
        if self.gram_over not in ("time", "time_frequency"):
            raise InputError(f"gram_over must be 'time' or 'time_frequency', got {self.gram_over!r}")
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 < self.learning_rate_decay <= 1:
            raise InputError(f"learning_rate_decay must be in (0, 1], got {self.learning_rate_decay}")
        for name in ("content_weight", "style_weight", "tv_weight", "l2_weight"):
            if not getattr(self, name) >= 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.griffin_lim_iters < 0:
            raise InputError(f"griffin_lim_iters must be >= 0, got {self.griffin_lim_iters}")
        if not 0 <= self.griffin_lim_momentum < 1:
            raise InputError(f"griffin_lim_momentum must be in [0, 1), got {self.griffin_lim_momentum}")


def _require_positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")


def to_json(config: Any) -> str:
    """Serialises a config dataclass to JSON."""
    return json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True)


def from_json(config_class: type[_Config], text: str) -> _Config:
    """Rebuilds a config of `config_class` from JSON; unknown fields are an error, missing ones take defaults."""
    values = json.loads(text)
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"{config_class.__name__} has no field(s) {', '.join(unknown)}")
    return config_class(**{name: _as_tuples(value) for name, value in values.items()})


def _as_tuples(value: Any) -> Any:
    # JSON has only lists; the frozen configs hold tuples (e.g. layer weights as ((name, weight), ...)).
    return tuple(_as_tuples(item) for item in value) if isinstance(value, list) else value
