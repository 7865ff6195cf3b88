"""A rule parameter: its type, default (or none: required), bounds and a one-line description, and the check of one
value against it. Each alert kind (``evaluators.EVALUATORS``, ``signalled.SIGNALLED``) declares the parameters its
rules take; ``rules.validate_parameters`` applies them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["REQUIRED", "Param", "check_params", "check_value"]

REQUIRED: Any = object()
KINDS = (float, int, str, list)


@dataclass(frozen=True)
class Param:
    name: str
    kind: type  # float, int, str or list (of str)
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    exclusive_minimum: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def check_value(param: Param, value: Any) -> tuple[Any, str | None]:
    """``value`` converted to the parameter's type, and the problem with it (None when it fits)."""
    if param.kind is list:
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            return value, "must be a list of names"
        bad = [item for item in value if param.choices and item not in param.choices]
        if bad:
            return value, f"unknown: {', '.join(bad)}; choose from {', '.join(param.choices)}"
        return value, None
    if param.kind is str:
        if not isinstance(value, str) or (param.choices and value not in param.choices):
            return value, f"must be one of {', '.join(param.choices)}"
        return value, None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return value, "must be a number"
    if param.kind is int:
        if value != int(value):
            return value, "must be a whole number"
        value = int(value)
    else:
        value = float(value)
    if param.minimum is not None and (value <= param.minimum if param.exclusive_minimum else value < param.minimum):
        return value, f"must be {'above' if param.exclusive_minimum else 'at least'} {param.minimum:g}; got {value:g}"
    if param.maximum is not None and value > param.maximum:
        return value, f"must be at most {param.maximum:g}; got {value:g}"
    return value, None


def check_params(params: tuple[Param, ...]) -> None:
    """For a kind being registered: unique names, known types, bounds in order, and defaults that fit them."""
    names = [param.name for param in params]
    if len(set(names)) != len(names):
        raise ValueError(f"parameter names repeat: {names}")
    for param in params:
        if not isinstance(param, Param) or param.kind not in KINDS:
            raise ValueError(f"parameter {param!r} must be a Param of float, int, str or list")
        if param.minimum is not None and param.maximum is not None and param.minimum > param.maximum:
            raise ValueError(f"parameter {param.name}: minimum {param.minimum} is above maximum {param.maximum}")
        if param.kind is str and not param.choices:
            raise ValueError(f"parameter {param.name}: a str parameter lists its choices")
        if not param.required:
            _, problem = check_value(param, param.default)
            if problem:
                raise ValueError(f"parameter {param.name}: the default {param.default!r} {problem}")
