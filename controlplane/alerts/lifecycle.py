"""Closing alerts: the step shared by the alert life cycle (``service``) and the rule changes (``rules``: a rule
disabled, deleted or re-scoped closes its open alerts). Each close is an audit event and queues a resolve notice."""

from __future__ import annotations

from datetime import datetime

from controlplane.choices import AlertState, NotificationEvent
from controlplane.models import Alert, AlertCondition, AlertRule
from controlplane.models.alerts import OPEN_STATES
from controlplane.services import audit

from .delivery import enqueue

__all__ = ["audit_state", "close_alert", "resolve_open_alerts_of_rule"]


def audit_state(alert: Alert) -> dict:
    return {
        "state": alert.state,
        "title": alert.title,
        "acknowledged_by": alert.acknowledged_by_id,
        "resolved_by": alert.resolved_by_id,
        "resolution": alert.resolution,
    }


def close_alert(actor: audit.Actor, alert: Alert, resolution: str, now: datetime) -> None:
    """Resolve ``alert`` (call inside a transaction): recorded, audited, and a resolve notice queued."""
    before = audit_state(alert)
    alert.state, alert.resolved_at, alert.resolved_by = AlertState.RESOLVED, now, actor.user
    alert.resolution = resolution[:200]
    alert.save(update_fields=["state", "resolved_at", "resolved_by", "resolution"])
    audit.record(actor, "alert.resolve", alert, before=before, after=audit_state(alert), message=resolution)
    enqueue(alert, NotificationEvent.RESOLVED, now)


def resolve_open_alerts_of_rule(actor: audit.Actor, rule: AlertRule, reason: str, now: datetime) -> int:
    """Close a rule's open alerts (it was disabled, deleted or re-scoped) and forget its pending conditions."""
    alerts = list(Alert.objects.select_for_update().filter(rule=rule, state__in=OPEN_STATES))
    for alert in alerts:
        close_alert(actor, alert, reason, now)
    AlertCondition.objects.filter(rule=rule).delete()
    return len(alerts)
