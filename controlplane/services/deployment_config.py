"""The deployment config: every field with a type, a default, bounds and a one-line description.

``validate_config`` merges a partial change onto a base config, rejects unknown keys and wrong types, checks bounds
and cross-field rules against the model version (router weights per expert, context length), and returns the full
config that a revision stores. Errors name the field: ``{"max_batch_size": ["must be at most 1024; got 5000"]}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from controlplane.choices import Precision
from controlplane.models import ModelVersion

from .errors import InvalidInput

__all__ = ["CONFIG_FIELDS", "ConfigField", "LeakAction", "default_config", "diff_configs", "validate_config"]


class LeakAction:
    ALERT = "alert"
    RESTART = "restart"
    CHOICES = (ALERT, RESTART)


@dataclass(frozen=True)
class ConfigField:
    name: str
    kind: type  # int, float, str or list
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False


CONFIG_FIELDS: dict[str, ConfigField] = {
    f.name: f
    for f in [
        ConfigField(
            "precision", str, None, "Precision the worker runs the weights in.", choices=tuple(Precision.values)
        ),
        ConfigField("max_batch_size", int, 16, "Most sequences decoded together in one step.", 1, 1024),
        ConfigField(
            "max_wait_ms", float, 5.0, "Longest wait for a batch to fill while requests are queued.", 0, 10_000
        ),
        ConfigField("max_queue", int, 256, "Waiting requests beyond this are refused with 429.", 1, 100_000),
        ConfigField(
            "session_timeout_s", int, 3600, "Idle sessions expire after this and free their KV cache.", 10, 604_800
        ),
        ConfigField("cache_ttl_s", int, 300, "Seconds the gateway caches deterministic answers (0: off).", 0, 604_800),
        ConfigField(
            "router_weights",
            list,
            None,
            "One non-negative multiplier per expert on the router's gate (1 = neutral; empty: all 1).",
            nullable=True,
        ),
        ConfigField("memory_headroom", float, 0.2, "Share of device memory the fit check keeps free.", 0.0, 0.9),
        ConfigField(
            "max_seq_len",
            int,
            None,
            "Longest prompt + completion in tokens; sizes the KV cache (empty: the model's context length).",
            16,
            1_048_576,
            nullable=True,
        ),
        ConfigField(
            "leak_action",
            str,
            LeakAction.ALERT,
            "What a confirmed memory leak does: alert, or alert and drain and restart the worker.",
            choices=LeakAction.CHOICES,
        ),
    ]
}


def default_config(model_version: ModelVersion) -> dict:
    config = {name: field.default for name, field in CONFIG_FIELDS.items()}
    config["precision"] = model_version.precision
    return config


def validate_config(changes: Any, model_version: ModelVersion, base: dict | None = None) -> dict:
    """The full config after applying ``changes`` to ``base`` (defaults when None); raises ``InvalidInput``."""
    if not isinstance(changes, dict):
        raise InvalidInput({"config": [f"must be an object; got {_type_name(changes)}"]})
    errors: dict[str, list[str]] = {}
    for key in sorted(set(changes) - set(CONFIG_FIELDS)):
        errors[key] = [f"unknown config key; known keys are: {', '.join(CONFIG_FIELDS)}"]
    config = dict(base) if base is not None else default_config(model_version)
    for key, value in changes.items():
        if key in CONFIG_FIELDS:
            problem = _check_value(CONFIG_FIELDS[key], value)
            if problem:
                errors[key] = [problem]
            else:
                config[key] = float(value) if CONFIG_FIELDS[key].kind is float and value is not None else value
    for key, problems in _check_against_model(config, model_version).items():
        errors.setdefault(key, problems)
    if errors:
        raise InvalidInput({"config": errors})
    return config


def _type_name(value: Any) -> str:
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _check_value(field: ConfigField, value: Any) -> str | None:
    if value is None:
        return None if field.nullable else "may not be null"
    if field.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        return f"must be an integer; got {_type_name(value)}"
    if field.kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"must be a number; got {_type_name(value)}"
    if field.kind is str and not isinstance(value, str):
        return f"must be a string; got {_type_name(value)}"
    if field.kind is list and not isinstance(value, list):
        return f"must be a list; got {_type_name(value)}"
    if field.kind is float and not math.isfinite(value):
        return "must be a finite number"
    if field.minimum is not None and value < field.minimum:
        return f"must be at least {field.minimum:g}; got {value}"
    if field.maximum is not None and value > field.maximum:
        return f"must be at most {field.maximum:g}; got {value}"
    if field.choices and value not in field.choices:
        return f"must be one of {', '.join(field.choices)}; got {value!r}"
    return None


def _check_against_model(config: dict, model_version: ModelVersion) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    arch = model_version.architecture or {}
    weights = config.get("router_weights")
    if weights is not None:
        problem = check_router_weights(weights, model_version.n_experts, arch.get("top_k"))
        if problem:
            errors["router_weights"] = [problem]
    context = arch.get("max_seq_len")
    max_seq_len = config.get("max_seq_len")
    if max_seq_len is not None and context and max_seq_len > context:
        errors["max_seq_len"] = [f"must be at most the model's context length of {context}; got {max_seq_len}"]
    return errors


def check_router_weights(weights: list, n_experts: int | None, top_k: int | None) -> str | None:
    """None when ``weights`` suits a model with ``n_experts`` experts choosing ``top_k``; else the problem."""
    if not n_experts:
        return "this model has no experts to weight; leave router_weights empty"
    if len(weights) != n_experts:
        return f"needs one weight per expert: {n_experts} values; got {len(weights)}"
    for i, weight in enumerate(weights):
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            return f"weight {i} must be a finite number; got {weight!r}"
        if weight < 0:
            return f"weight {i} must not be negative; got {weight}"
        if weight > 1000:
            return f"weight {i} must be at most 1000; got {weight}"
    positive = sum(1 for weight in weights if weight > 0)
    if top_k and positive < top_k:
        return f"at least top_k={top_k} experts need a weight above 0; {positive} do"
    return None


def diff_configs(before: dict, after: dict) -> list[dict]:
    """The keys whose values differ, as ``[{"key", "before", "after"}]`` in a stable order."""
    keys = list(CONFIG_FIELDS) + sorted((set(before) | set(after)) - set(CONFIG_FIELDS))
    return [
        {"key": key, "before": before.get(key), "after": after.get(key)}
        for key in keys
        if before.get(key) != after.get(key)
    ]
