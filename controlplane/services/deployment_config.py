"""The deployment config: the worker contract's settings (``inference/protocol.py``) plus the control plane's own.

Every key has a type, a default, bounds, a unit and a one-line description, declared once: the worker's settings
in the worker contract, the control plane's (response cache, fit headroom, leak policy) here with the same
``Setting`` type. ``validate_config`` merges a partial change onto a base config, rejects unknown keys and wrong
types, checks bounds and cross-field rules (the worker's own, and against the model version: router weights per
expert, context length), and returns the full config that a revision stores. Errors name the field:
``{"max_batch_size": ["must be at most 1024; got 5000"]}``.
"""

from __future__ import annotations

from typing import Any, Final

from controlplane.models import ModelVersion
from inference.protocol import (
    LIVE,
    RELOAD,
    RESTART,
    SETTINGS,
    ConfigError,
    Setting,
    check_router_weights,
    check_worker_rules,
)

from .errors import ErrorTree, InvalidInput

__all__ = [
    "CONFIG_FIELDS",
    "CONTROL_PLANE",
    "LIVE",
    "RELOAD",
    "RESTART",
    "LeakAction",
    "config_schema",
    "default_config",
    "diff_configs",
    "restart_keys",
    "validate_config",
]

CONTROL_PLANE: Final = "control_plane"


class LeakAction:
    ALERT = "alert"
    RESTART = "restart"
    CHOICES = (ALERT, RESTART)


CONTROL_PLANE_SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting(
            "cache_ttl_s",
            int,
            300,
            "How long the gateway caches deterministic answers (0: off).",
            unit="s",
            minimum=0,
            maximum=604_800,
            apply=CONTROL_PLANE,
            label="Response cache TTL",
        ),
        Setting(
            "memory_headroom",
            float,
            0.2,
            "Share of device memory the fit check keeps free.",
            unit="share",
            minimum=0.0,
            maximum=0.9,
            apply=CONTROL_PLANE,
        ),
        Setting(
            "leak_action",
            str,
            LeakAction.ALERT,
            "What a confirmed memory leak does: alert, or alert and drain and restart the worker.",
            choices=LeakAction.CHOICES,
            apply=CONTROL_PLANE,
        ),
    ]
}
#: Every key of a deployment's config: the worker's settings, then the control plane's.
CONFIG_FIELDS: dict[str, Setting] = {**SETTINGS, **CONTROL_PLANE_SETTINGS}


def default_config(model_version: ModelVersion) -> dict:
    config = {name: field.default for name, field in CONFIG_FIELDS.items()}
    config["precision"] = model_version.precision
    return config


def restart_keys(before: dict, after: dict) -> list[str]:
    """The keys whose change needs a new worker process (``restart`` settings of the worker contract)."""
    return [
        key
        for key, spec in CONFIG_FIELDS.items()
        if spec.apply == RESTART and before.get(key, spec.default) != after.get(key, spec.default)
    ]


def config_schema() -> dict[str, Any]:
    """The JSON schema of ``config`` for the OpenAPI document: every key with its type, bounds, unit and doc."""
    json_types = {int: "integer", float: "number", str: "string", list: "array", bool: "boolean"}
    properties: dict[str, Any] = {}
    for name, spec in CONFIG_FIELDS.items():
        prop: dict[str, Any] = {"type": json_types[spec.kind], "description": spec.help_text()}
        if spec.kind is list:
            prop["items"] = {"type": "number", "minimum": 0}
        if spec.minimum is not None:
            prop["minimum"] = spec.minimum
        if spec.maximum is not None:
            prop["maximum"] = spec.maximum
        if spec.choices:
            prop["enum"] = list(spec.choices)
        if spec.nullable:
            prop["nullable"] = True
        properties[name] = prop
    return {"type": "object", "properties": properties, "additionalProperties": False}


def validate_config(changes: Any, model_version: ModelVersion, base: dict | None = None) -> dict:
    """The full config after applying ``changes`` to ``base`` (defaults when None); raises ``InvalidInput``."""
    if not isinstance(changes, dict):
        got = "a list" if isinstance(changes, list) else "null" if changes is None else type(changes).__name__
        raise InvalidInput({"config": [f"must be an object; got {got}"]})
    errors: ErrorTree = {}
    for key in sorted(set(changes) - set(CONFIG_FIELDS)):
        errors[key] = [f"unknown config key; known keys are: {', '.join(CONFIG_FIELDS)}"]
    config = {**default_config(model_version), **(base or {})}
    for key, value in changes.items():
        if key in CONFIG_FIELDS:
            problem = CONFIG_FIELDS[key].problem(value)
            if problem:
                errors[key] = [problem]
            else:
                config[key] = CONFIG_FIELDS[key].coerce(value)
    if not errors:
        try:
            check_worker_rules(config)
        except ConfigError as exc:
            errors[exc.param] = [str(exc)]
    for key, problems in _check_against_model(config, model_version).items():
        errors.setdefault(key, problems)
    if errors:
        raise InvalidInput({"config": errors})
    return config


def _check_against_model(config: dict, model_version: ModelVersion) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    arch = model_version.architecture or {}
    weights = config.get("router_weights")
    if weights is not None:
        problem = _router_weights_problem(weights, model_version.n_experts, arch.get("top_k"))
        if problem:
            errors["router_weights"] = [problem]
    context = arch.get("max_seq_len")
    max_seq_len = config.get("max_seq_len")
    if max_seq_len is not None and context and max_seq_len > context:
        errors["max_seq_len"] = [f"must be at most the model's context length of {context}; got {max_seq_len}"]
    return errors


def _router_weights_problem(weights: list, n_experts: int | None, top_k: int | None) -> str | None:
    if not n_experts:
        return "this model has no experts to weight; leave router_weights empty"
    try:
        check_router_weights(weights, n_experts, top_k)
    except ConfigError as exc:
        return str(exc).removeprefix("router_weights ")
    return None


def diff_configs(before: dict, after: dict) -> list[dict]:
    """The keys whose values differ, as ``[{"key", "before", "after"}]`` in a stable order."""
    keys = list(CONFIG_FIELDS) + sorted((set(before) | set(after)) - set(CONFIG_FIELDS))
    rows = []
    for key in keys:
        default = CONFIG_FIELDS[key].default if key in CONFIG_FIELDS else None
        old, new = before.get(key, default), after.get(key, default)  # a key older revisions lack had its default
        if old != new:
            rows.append({"key": key, "before": old, "after": new})
    return rows
