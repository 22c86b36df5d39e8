"""Settings as their declared types: text parsed, values checked, before any work starts.

A setting reaches a protocol config from the command line (`--seeds 0 1`, `--set batch_size=64`), from a papermill
`-p` parameter (always text: `-p SEEDS '[0, 1]'`), from a YAML profile or from Python. `coerce` turns each value into
the type its config field declares (`int`, `float`, `str`, `bool | None`, `tuple[float, ...]`, ...): text is read as
JSON, then YAML, so `'[0, 1]'` is a list and `1e-4` a number; a single name or a comma-separated text fills a tuple
(`granularities=channel` is `("channel",)`, never its letters). A value that cannot be converted is left as it is
and reported by `value_problems`, which `ProtocolConfig.problems()` calls: wrong types, ranges, empty or duplicated
lists, unknown names, all at once. Used by `protocol.build_config`; nothing here trains or reads data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from typing import Any

__all__ = ["parse_text", "coerce", "describe", "type_problem", "value_problems", "OPTIMIZERS"]

OPTIMIZERS = ("adamw", "sgd")  # what train.make_optimizer builds
_NONE_WORDS = ("none", "null", "~")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class _Unconvertible(Exception):
    """A value that does not fit its declared type."""


def parse_text(text: str) -> Any:
    """A value given as text: JSON first (so `1e-4` is a number, which YAML 1.1 reads as text), then YAML, else the
    text itself."""
    import yaml

    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _optional(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed) of an annotation such as `int | None`."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return options[0], len(options) < len(args)
    return tp, False


def describe(tp: Any) -> str:
    """An annotation in words, for messages: `int | None` is "a whole number (or null)"."""
    inner, nullable = _optional(tp)
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        what = {int: "whole numbers", float: "numbers", str: "names"}.get(args[0], "values")
        text = f"a list of {what}" if args[-1] is Ellipsis else f"a list of {len(args)} {what}"
    else:
        text = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}.get(inner, str(inner))
    return text + (" (or null)" if nullable else "")


def _convert(tp: Any, value: Any) -> Any:
    inner, nullable = _optional(tp)
    if value is None:
        if nullable:
            return None
        raise _Unconvertible
    if isinstance(value, str) and inner is not str:
        if nullable and value.strip().lower() in _NONE_WORDS:
            return None
        if typing.get_origin(inner) is not tuple and inner is not bool:
            parsed = parse_text(value)
            if isinstance(parsed, str):
                raise _Unconvertible
            return _convert(tp, parsed)
    if typing.get_origin(inner) is tuple:
        return _convert_tuple(inner, value)
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise _Unconvertible
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Unconvertible
        if isinstance(value, float) and not value.is_integer():
            raise _Unconvertible
        return int(value)
    if inner is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Unconvertible
        return float(value)
    if inner is str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if nullable and isinstance(value, str) and value.strip() in ("None", "null"):  # papermill and YAML spellings
            return None
        if isinstance(value, str):
            return value
        raise _Unconvertible
    return value  # a type this module does not know: left to the config's own checks


def _convert_tuple(tp: Any, value: Any) -> tuple:
    args = typing.get_args(tp)
    if isinstance(value, str):
        parsed = parse_text(value)
        if isinstance(parsed, str):  # "channel" or "channel,layer": names, not letters
            parsed = [part.strip() for part in parsed.split(",") if part.strip()] if "," in parsed else [parsed]
        value = parsed
    if not isinstance(value, (list, tuple)):
        value = [value]
    if args[-1] is Ellipsis:
        return tuple(_convert(args[0], v) for v in value)
    if len(value) != len(args):
        raise _Unconvertible
    return tuple(_convert(a, v) for a, v in zip(args, value))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with each one converted to the declared type of `cls`'s field of that name (see the module
    docstring). A value that does not convert, or a name `cls` has no field for, is returned unchanged, so that the
    config's checks report it together with every other problem."""
    hints = _hints(cls)
    converted = {}
    for name, value in values.items():
        try:
            converted[name] = _convert(hints[name], value) if name in hints else value
        except (_Unconvertible, TypeError, ValueError):
            converted[name] = value
    return converted


def _fits(tp: Any, value: Any) -> bool:
    try:
        return _convert(tp, value) == value and not (isinstance(value, str) and _optional(tp)[0] is not str)
    except (_Unconvertible, TypeError, ValueError):
        return False


def type_problem(name: str, tp: Any, value: Any) -> str | None:
    """The sentence saying that `value` is not of type `tp` (None when it is)."""
    if _fits(tp, value) and (not isinstance(value, float) or _optional(tp)[0] is not int):
        return None
    return f"{name} must be {describe(tp)}, got {value!r}"


def _finite(v: float) -> bool:
    return math.isfinite(v)


# field -> (requirement in words, test); a rule is applied only when the field has its declared type (and not None)
_RULES: dict[str, tuple[str, typing.Callable[[Any], bool]]] = {
    "batch_size": (">= 1", lambda v: v >= 1),
    "eval_batch_size": (">= 1", lambda v: v >= 1),
    "pretrain_epochs": (">= 0", lambda v: v >= 0),
    "posttrain_epochs": (">= 0", lambda v: v >= 0),
    "pretrain_lr": ("a finite number > 0", lambda v: _finite(v) and v > 0),
    "posttrain_lr": ("a finite number > 0", lambda v: _finite(v) and v > 0),
    "slope_lr_mult": ("a finite number > 0", lambda v: _finite(v) and v > 0),
    "weight_decay": ("a finite number >= 0", lambda v: _finite(v) and v >= 0),
    "freeze_tol": ("between 0 and 1", lambda v: _finite(v) and 0 < v < 1),
    "target_tol": ("a finite number > 0", lambda v: _finite(v) and v > 0),
    "width_mult": ("a finite number > 0", lambda v: _finite(v) and v > 0),
    "n_train": (">= 1 (or null: all)", lambda v: v >= 1),
    "n_test": (">= 1 (or null: all)", lambda v: v >= 1),
    "image_size": (">= 8 pixels", lambda v: v >= 8),
    "n_classes": (">= 1 (or null: all)", lambda v: v >= 1),
    "n_train_per_class": (">= 1 (or null: all)", lambda v: v >= 1),
    "n_val_per_class": (">= 1 (or null: all)", lambda v: v >= 1),
    "num_workers": (">= 0", lambda v: v >= 0),
    "generated_folder": ("4 numbers >= 1 (classes, train and val images per class, pixels)",
                         lambda v: all(x >= 1 for x in v)),
    "posttrain_optimizer": (f"one of {list(OPTIMIZERS)}", lambda v: v in OPTIMIZERS),
    "arch": ("a RepVGG family member (A0, A1 or A2)", lambda v: v in _repvgg_archs()),
    "device": ('"auto" or a torch device such as "cpu", "cuda", "cuda:1"', lambda v: _is_device(v)),
}
_LISTS = {"omegas": "ω", "targets": "target NAPL", "granularities": "granularity", "seeds": "seed"}  # distinct values
_MAY_BE_EMPTY = ("omegas", "targets", "seeds")  # ProtocolConfig.problems() asks for one ω or target, and a seed


def _repvgg_archs() -> tuple[str, ...]:
    from .models import REPVGG_CONFIGS

    return tuple(REPVGG_CONFIGS)


def _is_device(text: str) -> bool:
    import torch

    try:
        return text == "auto" or bool(torch.device(text))
    except (RuntimeError, ValueError, TypeError):
        return False


def value_problems(cfg: Any) -> list[str]:
    """Everything wrong with the values of a config dataclass, one sentence each: a value not of its declared type,
    a number out of range, an unknown name, an empty or duplicated list, training sizes that give no step."""
    hints = _hints(type(cfg))
    found, typed = [], {}
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        problem = type_problem(field.name, hints[field.name], value)
        if problem:
            found.append(problem)
        else:
            typed[field.name] = value
    for name, (requirement, test) in _RULES.items():
        if typed.get(name) is not None and not test(typed[name]):
            found.append(f"{name} must be {requirement}, got {typed[name]!r}")
    for name, word in _LISTS.items():
        values = typed.get(name)
        if values is None:
            continue
        if not values and name not in _MAY_BE_EMPTY:
            found.append(f"{name} is empty: give at least one {word}")
        repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
        if repeated:
            why = " (each seed is an independent network; a repeated one would count as a second sample)" if (
                name == "seeds") else ""
            found.append(f"{name} has duplicates {repeated}: give each {word} once{why}")
    n_train, batch = typed.get("n_train"), typed.get("batch_size")
    if isinstance(n_train, int) and isinstance(batch, int) and 1 <= n_train < batch:
        found.append(f"n_train ({n_train}) is smaller than batch_size ({batch}): an epoch would have no training "
                     "step; raise n_train or lower batch_size")
    return found
