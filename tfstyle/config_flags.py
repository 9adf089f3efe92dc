"""Command-line flags derived from the config dataclasses, so that each default and help text is written once.

    config_flags.define(configs.TransferConfig, exclude=("explicit_gram",))   # --steps, --learning_rate, ...
    config = config_flags.build(configs.TransferConfig, flags.FLAGS, exclude=("explicit_gram",))

A field's flag has the field's name, its default, and its help from the class docstring's `Attributes:` section.
A str field made with `configs._choice` becomes an enum flag; `name:weight,...` flags fill layer-weight fields.
"""

import dataclasses
import re
from typing import Any, Iterable

from absl import flags

from tfstyle.errors import InputError

_LAYER_WEIGHTS = tuple[tuple[str, float], ...]


def attribute_docs(config_class: type) -> dict[str, str]:
    """{field name: its description} from a Google-style `Attributes:` section (a line may name several fields,
    "a, b: ..." or "a / b: ...")."""
    doc = config_class.__doc__ or ""
    section = doc.partition("Attributes:")[2]
    docs, current = {}, []
    for line in section.splitlines():
        match = re.match(r"^\s{8}([\w][\w ,/]*):\s(.*)$", line)
        if match:
            current = [name for name in re.split(r"[ ,/]+", match.group(1)) if name]
            for name in current:
                docs[name] = match.group(2).strip()
        elif line.strip() and current:
            for name in current:
                docs[name] += " " + line.strip()
    return docs


def define(config_class: type, *, exclude: Iterable[str] = (), flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines a flag for every field of `config_class` not in `exclude`."""
    docs = attribute_docs(config_class)
    defaults = config_class()
    for field in dataclasses.fields(config_class):
        if field.name in exclude:
            continue
        default = getattr(defaults, field.name)
        help_text = docs.get(field.name) or field.name.replace("_", " ")
        choices = field.metadata.get("choices")
        if choices:
            flags.DEFINE_enum(field.name, default, list(choices), help_text, flag_values=flag_values)
        elif field.type == _LAYER_WEIGHTS:
            flags.DEFINE_string(field.name, "", help_text + " Written name:weight,... (a bare name weighs 1).",
                                flag_values=flag_values)
        elif isinstance(default, bool):
            flags.DEFINE_bool(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, str):
            flags.DEFINE_string(field.name, default, help_text, flag_values=flag_values)
        else:
            raise TypeError(f"{config_class.__name__}.{field.name}: no flag type for {field.type}")


def build(config_class: type, flag_values: flags.FlagValues = flags.FLAGS, *, exclude: Iterable[str] = (),
          **values: Any):
    """`config_class` from the flags `define` made (fields in `exclude` keep their defaults), plus `values`."""
    exclude = set(exclude) | set(values)
    for field in dataclasses.fields(config_class):
        if field.name in exclude:
            continue
        value = flag_values[field.name].value
        if field.type == _LAYER_WEIGHTS:
            value = parse_layer_weights(value, field.name)
        values[field.name] = value
    return config_class(**values)


def parse_layer_weights(text: str, flag_name: str) -> _LAYER_WEIGHTS:
    """'conv1:1,conv2:0.5' -> (('conv1', 1.0), ('conv2', 0.5)); a bare name has weight 1."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition(":")
        try:
            pairs.append((name, float(weight) if weight else 1.0))
        except ValueError:
            raise InputError(f"--{flag_name}: {item!r} is not name:weight") from None
    return tuple(pairs)
