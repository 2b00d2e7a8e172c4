"""Typed lab configs and `key=value` overrides.

A lab's config is a dataclass whose fields are its knobs. `option(default, "help")` declares one
knob with its help text, so `deepscape show` can list every option with type, default and help.
`apply_overrides` turns `["lr=0.1", "model=mlp"]` into a new config, converting each value to the
field's type and answering a mistake with a one-line error that names the closest valid choice.
A tuple or list option takes its items separated by commas (`betas=0.9,0.95`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A bad override: the message is one line and names the fix."""


def option(default: Any, help: str) -> Any:
    """A config field with a default and a one-line help text."""
    return field(default=default, metadata={"help": help})


def closest(word: str, choices: typing.Iterable[str]) -> str:
    """' — did you mean X?' for the closest choice, or '' when nothing is close."""
    by_lower = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.5)
    return f" — did you mean '{by_lower[match[0]]}'?" if match else ""


@dataclass
class TrainConfig:
    """The knobs every training lab shares; a lab's own Config extends it."""

    seed: int = option(0, "random seed: same seed, same run")
    epochs: int = option(10, "passes over the training split")
    batch_size: int = option(64, "examples per optimisation step")
    lr: float = option(1e-3, "peak learning rate")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "sgd (with momentum) or adamw")
    momentum: float = option(0.9, "SGD momentum")
    betas: tuple[float, float] = option(
        (0.9, 0.999), "AdamW's decay rates of its gradient and squared-gradient averages"
    )
    weight_decay: float = option(0.0, "decoupled weight decay")
    schedule: Literal["constant", "cosine", "onecycle", "triangle"] = option(
        "onecycle",
        "learning-rate schedule over the whole run (triangle: 0.2× up to the peak at `warmup`, "
        "down to 0.07×, momentum constant; airbench's)",
    )
    warmup: float = option(0.1, "fraction of steps spent warming the LR up from ~0")
    label_smoothing: float = option(0.0, "cross-entropy label smoothing")
    lookahead: bool = option(
        False, "every 5 steps, move the weights to a moving average of themselves (Lookahead)"
    )
    precision: Literal["fp32", "bf16", "fp16", "auto"] = option(
        "fp32",
        "numeric precision of forward passes (bf16 is fast on recent CPUs; auto: bf16 where the "
        "hardware has it)",
    )
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto picks a GPU when there is one")
    threads: int = option(0, "CPU threads for PyTorch (0: all cores)")
    channels_last: bool = option(
        True, "lay image batches out channels-last (faster convolutions, CPU and GPU)"
    )
    max_steps: int = option(0, "optimisation steps to train for (0: count in epochs)")
    eval_every: int = option(0, "steps between evaluations on validation (0: each epoch's end)")
    eval_batches: int = option(
        0, "validation batches an evaluation estimates from (0: the whole split)"
    )
    group_by_length: bool = option(
        False, "text: shuffled batches of similarly long sentences (less padding, less work)"
    )
    grad_clip: float = option(0.0, "scale gradients down to this global norm (0: never)")
    grad_accum: int = option(1, "micro-batches whose gradients add up to one step")
    diagnostics_every: int = option(
        10,
        "steps between measurements of the gradient norm and of each layer's update size"
        " (a copy of every weight)",
    )
    checkpoint_every: float = option(
        10.0, "seconds between checkpoints, taken after evaluations (0: at every evaluation)"
    )
    shard: bool = option(
        False,
        "under a launcher, split weights, gradients and optimizer state across the N processes "
        "(FSDP, ZeRO stage 3): each holds 1/N of them",
    )


def describe(config_type: type) -> list[dict[str, Any]]:
    """Every option of a config class: name, type, default, help."""
    return [
        {
            "name": f.name,
            "type": _type_name(_field_types(config_type)[f.name]),
            "default": f.default,
            "help": f.metadata.get("help", ""),
        }
        for f in dataclasses.fields(config_type)
    ]


def apply_overrides(config: Any, overrides: typing.Iterable[str]) -> Any:
    """A copy of `config` with each `key=value` applied (values converted to the field's type)."""
    types_by_name = _field_types(type(config))
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"'{item}' is not key=value (for example lr=0.01)")
        if key not in types_by_name:
            raise ConfigError(
                f"unknown config key '{key}'{closest(key, types_by_name)}"
                f" (keys: {', '.join(types_by_name)})"
            )
        changes[key] = parse_value(key, text.strip(), types_by_name[key])
    return dataclasses.replace(config, **changes)


def parse_value(key: str, text: str, annotation: Any) -> Any:
    """Convert `text` to `annotation` (int, float, bool, str, Literal, X | None, and tuples and
    lists of those)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", "") and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return parse_value(key, text, inner)
    if origin is Literal:
        choices = [str(a) for a in args]
        if text not in choices:
            raise ConfigError(
                f"{key}={text!r} is not one of {', '.join(choices)}{closest(text, choices)}"
            )
        return args[choices.index(text)]
    if origin in (tuple, list):
        return _parse_items(key, text, annotation)
    if annotation is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}={text!r} is not a bool (use true or false)")
    if annotation is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r} is not a float") from None
    if annotation is int:
        try:
            return int(text)
        except ValueError:
            pass
        try:  # 1e3 is a fine int; 2.5 is not
            value = float(text)
        except ValueError:
            value = math.nan
        if value.is_integer():
            return int(value)
        raise ConfigError(f"{key}={text!r} is not an int")
    if annotation is str:
        return text
    raise ConfigError(f"{key}: cannot set a {_type_name(annotation)} from the command line")


def _parse_items(key: str, text: str, annotation: Any) -> tuple | list:
    """`a,b,c` (or `[a,b,c]`) as a tuple or a list. Whole numbers may also be joined by dashes,
    `3-4-5`: a sweep lists several such values with commas between them (`widths=3-4-5,2-3-4`)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    fixed = origin is tuple and Ellipsis not in args  # tuple[float, float]: exactly two
    item_types = args if fixed else args[:1]
    inside = text.removeprefix("[").removesuffix("]").strip() if text.startswith("[") else text
    if not inside:
        items = []
    elif item_types == (int,) and re.fullmatch(r"\d+(-\d+)+", inside):
        items = inside.split("-")
    else:
        items = [item.strip() for item in inside.split(",")]
    if fixed and len(items) != len(args):
        raise ConfigError(f"{key}={text!r}: give {len(args)} values separated by commas")
    types_ = args if fixed else [args[0]] * len(items)
    values = [parse_value(key, item, type_) for item, type_ in zip(items, types_, strict=True)]
    return tuple(values) if origin is tuple else values


def format_value(value: Any) -> str:
    """`value` written as `parse_value` reads it back (a tuple or list in brackets, so that a
    sweep's commas between its choices leave it whole)."""
    if isinstance(value, tuple | list):
        return "[" + ",".join(format_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _field_types(config_type: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_type)}


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "none"
    if origin in (tuple, list):  # tuple[int, ...] and list[int]: "int,…"; tuple[float, float]
        return ",".join(_type_name(a) for a in args if a is not Ellipsis) + (
            "" if origin is tuple and Ellipsis not in args else ",…"
        )
    return getattr(annotation, "__name__", str(annotation))
