"""The alert life cycle: conditions become alerts, alerts are acknowledged and resolved, and each step queues the
e-mail that tells people about it.

Two ways in:
- ``signal(kind, deployment, key, firing, …)``: other parts report a condition they detected (a drift verdict, a
  memory leak, a failed job, a stopped scheduler) and report again when it clears;
- ``evaluate_alert_rules(now)``: the scheduler calls it every few seconds; it reads request latency and errors and
  worker restarts from the database, and sends reminders for alerts still firing.

A condition must hold for the rule's ``for_s`` before it fires (the pending state is stored, so it survives
restarts). While it holds, the same alert is updated, never duplicated: one open alert per (rule, deployment, key).
When it clears, the alert resolves and a resolve notice goes out. Everything takes ``now`` so tests control time.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from controlplane.choices import AlertKind, AlertState, NotificationEvent, NotificationStatus
from controlplane.models import Alert, AlertCondition, AlertRule, Deployment
from controlplane.models.alerts import OPEN_STATES
from controlplane.services import audit
from controlplane.services.errors import Conflict

from .cause import likely_cause
from .delivery import deliver_pending_notifications, enqueue
from .evaluators import EVALUATORS, Observation, Series
from .kinds import SIGNALLED
from .lifecycle import audit_state, close_alert, resolve_open_alerts_of_rule
from .rules import ensure_default_rules

logger = logging.getLogger(__name__)

__all__ = [
    "acknowledge_alert",
    "apply_observation",
    "check_scheduler_heartbeat",
    "evaluate_alert_rules",
    "group_key",
    "resolve_alert",
    "resolve_open_alerts_of_rule",
    "signal",
]


def group_key(rule: AlertRule, deployment: Deployment | None, key: str) -> str:
    return f"{rule.pk}/{deployment.pk if deployment else '*'}/{key}"[:255]


def _fire(rule: AlertRule, observation: Observation, key: str, now: datetime) -> Alert:
    deployment = observation.deployment
    alert = Alert.objects.create(
        rule=rule,
        rule_name=rule.name,
        kind=rule.kind,
        deployment=deployment,
        deployment_name=deployment.name if deployment else "",
        key=observation.key,
        group_key=key,
        state=AlertState.FIRING,
        severity=rule.severity,
        title=observation.title[:300],
        summary=observation.summary,
        values=observation.values,
        last_values=observation.values,
        threshold=observation.threshold,
        series=observation.resolved_series(),
        series_label=observation.series_label[:100],
        cause=likely_cause(deployment),
        started_at=now,
        last_seen_at=now,
    )
    audit.record(audit.SYSTEM, "alert.fire", alert, after=audit_state(alert))
    enqueue(alert, NotificationEvent.FIRING, now)
    return alert


def apply_observation(rule: AlertRule, observation: Observation, now: datetime) -> str:
    """Move the (rule, deployment, key) group on by one observation. Returns what happened: ``fired``,
    ``resolved``, ``pending`` (holding, not yet for ``for_s``), ``ongoing``, ``suppressed`` or ``ok``."""
    key = group_key(rule, observation.deployment, observation.key)
    with transaction.atomic():
        condition, _ = AlertCondition.objects.get_or_create(
            group_key=key, defaults={"rule": rule, "deployment": observation.deployment, "key": observation.key}
        )
        condition = AlertCondition.objects.select_for_update().get(pk=condition.pk)
        alert = Alert.objects.filter(group_key=key, state__in=OPEN_STATES).first()
        condition.evaluated_at, condition.last_values = now, observation.values
        outcome = "ok"
        if observation.firing:
            condition.active_since = condition.active_since or now
            if alert is not None:
                alert.last_seen_at, alert.last_values = now, observation.values
                alert.save(update_fields=["last_seen_at", "last_values"])
                outcome = "ongoing"
            elif condition.suppressed:
                outcome = "suppressed"
            elif now - condition.active_since >= timedelta(seconds=rule.for_s):
                _fire(rule, observation, key, now)
                outcome = "fired"
            else:
                outcome = "pending"
        else:
            condition.active_since, condition.suppressed = None, False
            if alert is not None:
                alert.last_values = observation.values
                alert.save(update_fields=["last_values"])
                close_alert(audit.SYSTEM, alert, "the condition cleared", now)
                outcome = "resolved"
        condition.save()
    return outcome


def _rules_for(kind: str, deployment: Deployment | None, key: str) -> list[AlertRule]:
    rules = AlertRule.objects.filter(kind=kind, enabled=True)
    rules = rules.filter(Q(deployment=None) | Q(deployment=deployment)) if deployment else rules.filter(deployment=None)
    selected = []
    entry = SIGNALLED.get(kind)
    key_filter = entry.key_filter if entry is not None else ""
    for rule in rules.order_by("pk"):
        wanted = rule.parameters.get(key_filter, []) if key_filter else []
        if not wanted or key in wanted:
            selected.append(rule)
    return selected


def signal(
    kind: str,
    deployment: Deployment | None,
    key: str,
    firing: bool,
    title: str = "",
    summary: str = "",
    values: dict | None = None,
    series: Series | None = None,
    *,
    threshold: float | None = None,
    series_label: str = "",
    now: datetime | None = None,
) -> dict[str, str]:
    """Report a condition detected elsewhere, and report again when it clears (``firing=False``).

    ``kind``: one of ``kinds.SIGNALLED`` (drift, leak, job_failure, scheduler_heartbeat, rollout). ``key`` says what
    within the deployment (the drift check's kind, the job's name, "scheduler"); the same (kind, deployment, key)
    firing again updates its open alert. ``values``: JSON-ready figures, shown in the e-mail as they are (keys
    ending in ``_s`` are seconds, in ``rate`` shares). ``series``: ``[(datetime or ISO string, value), …]`` or
    ``[(sample number, value), …]`` for the chart. Returns ``{rule name: outcome}`` (see ``apply_observation``).
    Notifications are queued, not sent: ``deliver_pending_notifications`` sends them.
    """
    entry = SIGNALLED.get(kind)
    if entry is None:
        raise ValueError(f"{kind!r} cannot be signalled; use one of {', '.join(SIGNALLED.names())}")
    now = now or timezone.now()
    ensure_default_rules()
    where = deployment.name if deployment else "the control plane"
    observation = Observation(
        deployment=deployment,
        key=key or "",
        firing=bool(firing),
        title=title or f"{entry.label}{f' ({key})' if key else ''} on {where}",
        summary=summary,
        values=values or {},
        threshold=threshold,
        series=series,
        series_label=series_label,
    )
    return {rule.name: apply_observation(rule, observation, now) for rule in _rules_for(kind, deployment, key or "")}


def _evaluate_rule(rule: AlertRule, now: datetime, counts: Counter) -> None:
    evaluator = EVALUATORS[rule.kind]
    targets = [rule.deployment] if rule.deployment is not None else list(Deployment.objects.all())
    for deployment in targets:
        try:
            counts[apply_observation(rule, evaluator.function(rule, deployment, now), now)] += 1
        except Exception:  # one broken rule or deployment must not stop the others
            logger.exception("alert rule %s on %s could not be evaluated", rule.name, deployment)
            counts["errors"] += 1


def send_reminders(now: datetime) -> int:
    """Queue a reminder for each alert firing (not acknowledged) for longer than its rule's repeat interval since
    the last notification, unless that one is still waiting to be delivered."""
    sent = 0
    firing = Alert.objects.filter(state=AlertState.FIRING, rule__repeat_interval_s__gt=0).select_related("rule")
    for alert in firing:
        last = alert.last_notified_at or alert.started_at
        assert alert.rule is not None  # filtered on rule__repeat_interval_s__gt=0
        if now - last < timedelta(seconds=alert.rule.repeat_interval_s):
            continue
        if alert.notifications.filter(status=NotificationStatus.PENDING).exists():
            continue
        with transaction.atomic():
            # Claimed like the outbox: only the process that moves last_notified_at queues the reminder.
            if Alert.objects.filter(pk=alert.pk, last_notified_at=alert.last_notified_at).update(last_notified_at=now):
                enqueue(alert, NotificationEvent.REMINDER, now)
                sent += 1
    return sent


def _resolve_orphans(now: datetime) -> int:
    """Open alerts whose deployment was deleted can no longer clear by themselves."""
    orphans = Alert.objects.filter(state__in=OPEN_STATES, deployment=None).exclude(deployment_name="")
    for alert in orphans:
        with transaction.atomic():
            close_alert(audit.SYSTEM, alert, "the deployment was deleted", now)
    return len(orphans)


def evaluate_alert_rules(now: datetime | None = None) -> dict[str, int]:
    """Evaluate every enabled rule of an evaluated kind (``EVALUATORS``: latency, error rate, worker restarts…) on
    every deployment it covers, then queue reminders. Returns counts of outcomes (``fired``, ``resolved``,
    ``pending``, ``ongoing``, ``ok``, ``reminders``, ``errors``…). Sends nothing: call
    ``deliver_pending_notifications`` after it."""
    now = now or timezone.now()
    ensure_default_rules()
    counts: Counter[str] = Counter()
    for rule in AlertRule.objects.filter(enabled=True, kind__in=EVALUATORS.names()).select_related("deployment"):
        _evaluate_rule(rule, now, counts)
    counts["reminders"] = send_reminders(now)
    counts["resolved"] += _resolve_orphans(now)
    return dict(counts)


def check_scheduler_heartbeat(
    last_beat_at: datetime | None, *, now: datetime | None = None, deliver: bool = True
) -> bool:
    """For a watchdog outside the scheduler: fire (or clear) the scheduler-heartbeat alert from the time of the
    scheduler's last heartbeat (None: none recorded yet, counts as stopped). Each enabled rule compares the age with
    its ``max_age_s``. Delivers the queued e-mails itself, since the scheduler that normally does is the one that
    stopped. Returns True when the heartbeat is older than the strictest rule allows."""
    now = now or timezone.now()
    ensure_default_rules()
    stale_any = False
    for rule in _rules_for(AlertKind.SCHEDULER_HEARTBEAT, None, "scheduler"):
        age = None if last_beat_at is None else (now - last_beat_at).total_seconds()
        stale = age is None or age > rule.parameters["max_age_s"]
        stale_any |= stale
        seen = "no heartbeat recorded" if age is None else f"last heartbeat {age:.0f} s ago"
        observation = Observation(
            deployment=None,
            key="scheduler",
            firing=stale,
            title=f"scheduler stopped running jobs: {seen}",
            summary=f"The scheduler records a heartbeat while it runs; rules fire after {rule.parameters['max_age_s']}"
            " s without one. Check the runscheduler / serve process and its log.",
            values={"heartbeat_age_s": age, "max_age_s": rule.parameters["max_age_s"]},
            threshold=rule.parameters["max_age_s"],
        )
        apply_observation(rule, observation, now)
    if deliver:
        deliver_pending_notifications(now)
    return stale_any


def acknowledge_alert(actor: audit.Actor, alert: Alert, comment: str = "", now: datetime | None = None) -> Alert:
    """An operator takes the alert: no more reminders. Only a firing alert can be acknowledged (409 otherwise)."""
    now = now or timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.state != AlertState.FIRING:
            raise Conflict(f"alert #{alert.pk} is {alert.state}; only a firing alert can be acknowledged")
        before = audit_state(alert)
        alert.state, alert.acknowledged_at, alert.acknowledged_by = AlertState.ACKNOWLEDGED, now, actor.user
        alert.save(update_fields=["state", "acknowledged_at", "acknowledged_by"])
        audit.record(actor, "alert.acknowledge", alert, before=before, after=audit_state(alert), message=comment)
    return alert


def resolve_alert(actor: audit.Actor, alert: Alert, comment: str = "", now: datetime | None = None) -> Alert:
    """An operator closes the alert. If its condition still holds, no new alert fires until it clears once."""
    now = now or timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if not alert.is_open:
            raise Conflict(f"alert #{alert.pk} is already resolved")
        AlertCondition.objects.filter(group_key=alert.group_key).exclude(active_since=None).update(suppressed=True)
        close_alert(actor, alert, f"resolved by {actor.name}{f': {comment}' if comment else ''}", now)
    return alert
