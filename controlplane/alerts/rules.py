"""Alert rule kinds, their parameters, and the service functions that create, change and delete rules.

Each kind declares its parameters with a type, a default (or none: required), bounds and a one-line description;
``validate_parameters`` rejects unknown keys and values that do not fit, naming the key, and returns the full set
with defaults filled in, which is what a rule stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from controlplane.choices import AlertKind, AlertSeverity, DriftKind
from controlplane.models import AlertRule, Deployment
from controlplane.services import audit
from controlplane.services.errors import InvalidInput

__all__ = [
    "KINDS",
    "Param",
    "create_rule",
    "delete_rule",
    "ensure_default_rules",
    "update_rule",
    "validate_parameters",
]

REQUIRED = object()
MAX_FOR_S = 7 * 24 * 3600
MAX_RECIPIENTS = 50


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


_WINDOW = Param("window_s", int, 300, "Seconds of requests looked at on each evaluation.", 10, 86_400)

KINDS: dict[str, tuple[Param, ...]] = {
    AlertKind.DRIFT: (
        Param("checks", list, [], "Drift checks that alert (empty: all).", choices=tuple(DriftKind.values)),
    ),
    AlertKind.LEAK: (),
    AlertKind.LATENCY: (
        Param(
            "threshold_s",
            float,
            REQUIRED,
            "Fires when the percentile is above this many seconds.",
            0,
            3600,
            exclusive_minimum=True,
        ),
        _WINDOW,
        Param("percentile", float, 95.0, "Which percentile of the window (50 to 100).", 50, 100),
        Param("metric", str, "latency_s", "Whole request or time to first token.", choices=("latency_s", "ttft_s")),
        Param("min_requests", int, 10, "Fewer requests in the window than this never fire.", 1, 1_000_000),
    ),
    AlertKind.ERROR_RATE: (
        Param("threshold", float, REQUIRED, "Fires when the share of failed requests is above this (0 to 1).", 0, 1),
        _WINDOW,
        Param("min_requests", int, 20, "Fewer requests in the window than this never fire.", 1, 1_000_000),
    ),
    AlertKind.WORKER_RESTART: (
        Param("window_s", int, 900, "Seconds of worker events looked at.", 60, 7 * 86_400),
        Param("min_count", int, 1, "Restarts and exits in the window that fire.", 1, 1000),
    ),
    AlertKind.JOB_FAILURE: (Param("jobs", list, [], "Job names that alert (empty: all)."),),
    AlertKind.SCHEDULER_HEARTBEAT: (
        Param("max_age_s", int, 300, "Fires when the scheduler's last heartbeat is older than this.", 30, 86_400),
    ),
    AlertKind.ROLLOUT: (),
}

# Rules created on first use for the kinds that need no threshold; disable one to silence its kind.
DEFAULT_RULES = {
    AlertKind.DRIFT: AlertSeverity.WARNING,
    AlertKind.LEAK: AlertSeverity.CRITICAL,
    AlertKind.WORKER_RESTART: AlertSeverity.WARNING,
    AlertKind.JOB_FAILURE: AlertSeverity.WARNING,
    AlertKind.SCHEDULER_HEARTBEAT: AlertSeverity.CRITICAL,
    AlertKind.ROLLOUT: AlertSeverity.WARNING,
}


def _check_value(param: Param, value: Any) -> tuple[Any, str | None]:
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


def validate_parameters(kind: str, parameters: Any) -> dict:
    """The full parameters of a rule of ``kind`` (defaults filled in), or ``InvalidInput`` naming each bad key."""
    if kind not in KINDS:
        raise InvalidInput.field("kind", f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise InvalidInput.field("parameters", "must be an object")
    specs = {param.name: param for param in KINDS[kind]}
    errors: dict[str, list[str]] = {}
    for key in sorted(set(parameters) - set(specs)):
        allowed = ", ".join(specs) or "none"
        errors[key] = [f"is not a parameter of {kind} rules (they take: {allowed})"]
    result = {}
    for name, param in specs.items():
        if name not in parameters:
            if param.required:
                errors[name] = ["is required"]
            else:
                result[name] = param.default
            continue
        result[name], problem = _check_value(param, parameters[name])
        if problem:
            errors[name] = [problem]
    if errors:
        raise InvalidInput({"parameters": errors})
    return result


def _clean_recipients(recipients: Any) -> list[str]:
    if recipients is None:
        return []
    if not isinstance(recipients, list) or not all(isinstance(item, str) for item in recipients):
        raise InvalidInput.field("recipients", "must be a list of e-mail addresses")
    if len(recipients) > MAX_RECIPIENTS:
        raise InvalidInput.field("recipients", f"at most {MAX_RECIPIENTS} addresses")
    cleaned = []
    for address in recipients:
        try:
            validate_email(address.strip())
        except ValidationError:
            raise InvalidInput.field("recipients", f"{address!r} is not an e-mail address") from None
        if address.strip() not in cleaned:
            cleaned.append(address.strip())
    return cleaned


def _check_durations(for_s: int, repeat_interval_s: int) -> None:
    errors = {}
    if not isinstance(for_s, int) or not 0 <= for_s <= MAX_FOR_S:
        errors["for_s"] = [f"must be between 0 and {MAX_FOR_S} seconds"]
    if not isinstance(repeat_interval_s, int) or not (repeat_interval_s == 0 or 60 <= repeat_interval_s <= MAX_FOR_S):
        errors["repeat_interval_s"] = [f"must be 0 (never) or between 60 and {MAX_FOR_S} seconds"]
    if errors:
        raise InvalidInput(errors)


def _fields(rule: AlertRule) -> dict:
    return audit.snapshot(rule, exclude=("created_at", "updated_at"))


def create_rule(
    actor: audit.Actor,
    *,
    name: str,
    kind: str,
    parameters: dict | None = None,
    deployment: Deployment | None = None,
    severity: str = AlertSeverity.WARNING,
    for_s: int = 0,
    repeat_interval_s: int = 4 * 3600,
    recipients: list[str] | None = None,
    enabled: bool = True,
    description: str = "",
) -> AlertRule:
    """Check and store a rule. Errors name the field (``parameters.threshold_s``, ``recipients``…)."""
    parameters = validate_parameters(kind, parameters)
    recipients = _clean_recipients(recipients)
    _check_durations(for_s, repeat_interval_s)
    if severity not in AlertSeverity.values:
        raise InvalidInput.field("severity", f"choose from {', '.join(AlertSeverity.values)}")
    if AlertRule.objects.filter(name=name).exists():
        raise InvalidInput.field("name", f"a rule named {name!r} already exists")
    with transaction.atomic():
        rule = AlertRule.objects.create(
            name=name,
            kind=kind,
            parameters=parameters,
            deployment=deployment,
            severity=severity,
            for_s=for_s,
            repeat_interval_s=repeat_interval_s,
            recipients=recipients,
            enabled=enabled,
            description=description,
            created_by=actor.user,
        )
        audit.record(actor, "alert_rule.create", rule, after=_fields(rule))
    return rule


EDITABLE = ("name", "parameters", "deployment", "severity", "for_s", "repeat_interval_s", "recipients", "enabled")


def update_rule(actor: audit.Actor, rule: AlertRule, **changes) -> AlertRule:
    """Change a rule (its kind is fixed). Disabling it resolves its open alerts; the kind's parameters are replaced
    as a whole, defaults filling what is left out."""
    from .service import resolve_open_alerts_of_rule

    unknown = set(changes) - {*EDITABLE, "description"}
    if unknown:
        raise InvalidInput({key: ["cannot be changed"] for key in sorted(unknown)})
    if "parameters" in changes:
        changes["parameters"] = validate_parameters(rule.kind, changes["parameters"])
    if "recipients" in changes:
        changes["recipients"] = _clean_recipients(changes["recipients"])
    _check_durations(changes.get("for_s", rule.for_s), changes.get("repeat_interval_s", rule.repeat_interval_s))
    if changes.get("severity", rule.severity) not in AlertSeverity.values:
        raise InvalidInput.field("severity", f"choose from {', '.join(AlertSeverity.values)}")
    name = changes.get("name", rule.name)
    if AlertRule.objects.filter(name=name).exclude(pk=rule.pk).exists():
        raise InvalidInput.field("name", f"a rule named {name!r} already exists")
    with transaction.atomic():
        rule = AlertRule.objects.select_for_update().get(pk=rule.pk)
        before = _fields(rule)
        for key, value in changes.items():
            setattr(rule, key, value)
        rule.save()
        after = _fields(rule)
        if after != before:
            audit.record(actor, "alert_rule.update", rule, before=before, after=after)
        if not rule.enabled:
            resolve_open_alerts_of_rule(actor, rule, "the rule was disabled", timezone.now())
        elif after["deployment"] != before["deployment"]:
            resolve_open_alerts_of_rule(actor, rule, "the rule now covers other deployments", timezone.now())
    return rule


def delete_rule(actor: audit.Actor, rule: AlertRule) -> None:
    """Delete a rule. Its open alerts are resolved first; its alerts stay in the history under the rule's name."""
    from .service import resolve_open_alerts_of_rule

    with transaction.atomic():
        resolve_open_alerts_of_rule(actor, rule, "the rule was deleted", timezone.now())
        audit.record(actor, "alert_rule.delete", rule, before=_fields(rule))
        rule.delete()


def ensure_default_rules() -> None:
    """Create a ``default-<kind>`` rule for every threshold-free kind that has no rule yet (one query when all
    exist). A deleted default comes back; disable it to silence the kind."""
    present = set(AlertRule.objects.filter(kind__in=list(DEFAULT_RULES)).values_list("kind", flat=True).distinct())
    for kind, severity in DEFAULT_RULES.items():
        if kind in present:
            continue
        with transaction.atomic():
            rule, created = AlertRule.objects.get_or_create(
                name=f"default-{kind.replace('_', '-')}",
                defaults={
                    "kind": kind,
                    "severity": severity,
                    "parameters": validate_parameters(kind, {}),
                    "description": "Created on first use; disable it to silence this kind of alert.",
                },
            )
            if created:
                audit.record(audit.SYSTEM, "alert_rule.create", rule, after=_fields(rule))
