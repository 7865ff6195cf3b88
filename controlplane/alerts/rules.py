"""Alert rules: the service functions that create, change and delete them, and the check of their parameters.

Each kind declares its parameters (``kinds.KINDS``: from the ``evaluators.EVALUATORS`` and ``kinds.SIGNALLED``
entries) with a type, a default (or none: required), bounds and a one-line description; ``validate_parameters``
rejects unknown keys and values that do not fit, naming the key, and returns the full set with defaults filled in,
which is what a rule stores.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from controlplane.choices import AlertSeverity
from controlplane.models import AlertRule, Deployment
from controlplane.services import audit
from controlplane.services.errors import ErrorTree, InvalidInput

from .evaluators import EVALUATORS
from .kinds import KINDS, SIGNALLED
from .lifecycle import resolve_open_alerts_of_rule
from .params import check_value

__all__ = [
    "KINDS",
    "create_rule",
    "default_rules",
    "delete_rule",
    "ensure_default_rules",
    "update_rule",
    "validate_parameters",
]

MAX_FOR_S = 7 * 24 * 3600
MAX_RECIPIENTS = 50


def default_rules() -> dict[str, str]:
    """Kind → severity of the ``default-<kind>`` rules created on first use (the kinds that need no threshold)."""
    entries = [*EVALUATORS, *SIGNALLED]
    return {entry.name: entry.default_severity for entry in entries if entry.default_severity is not None}


def validate_parameters(kind: str, parameters: Any) -> dict:
    """The full parameters of a rule of ``kind`` (defaults filled in), or ``InvalidInput`` naming each bad key."""
    if kind not in KINDS:
        raise InvalidInput.field("kind", f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise InvalidInput.field("parameters", "must be an object")
    specs = {param.name: param for param in KINDS[kind]}
    errors: ErrorTree = {}
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
        result[name], problem = check_value(param, parameters[name])
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
    errors: ErrorTree = {}
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
    with transaction.atomic():
        resolve_open_alerts_of_rule(actor, rule, "the rule was deleted", timezone.now())
        audit.record(actor, "alert_rule.delete", rule, before=_fields(rule))
        rule.delete()


def ensure_default_rules() -> None:
    """Create a ``default-<kind>`` rule for every threshold-free kind that has no rule yet (one query when all
    exist). A deleted default comes back; disable it to silence the kind."""
    defaults = default_rules()
    present = set(AlertRule.objects.filter(kind__in=list(defaults)).values_list("kind", flat=True).distinct())
    for kind, severity in defaults.items():
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
