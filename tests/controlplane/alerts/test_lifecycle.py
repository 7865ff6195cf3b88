"""The alert life cycle through ``signal``: firing, deduplication, "for" durations, reminders, acknowledgement,
resolution and the likely cause, on a controllable clock."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from controlplane.alerts.delivery import deliver_pending_notifications
from controlplane.alerts.rules import create_rule, update_rule
from controlplane.alerts.service import (
    acknowledge_alert,
    check_scheduler_heartbeat,
    evaluate_alert_rules,
    resolve_alert,
    signal,
)
from controlplane.choices import AlertKind, AlertState, NotificationEvent
from controlplane.models import Alert, AlertRule, AuditEvent, Notification
from controlplane.services import deployments
from controlplane.services.errors import Conflict

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def oncall(settings):
    settings.ONCALL_EMAILS = ["oncall@example.org"]


def drift(deployment, firing, clock, key="quality", **kwargs):
    values = {"statistic": 0.41, "threshold": 0.2, "verdict": "drift" if firing else "ok"}
    title = "quality below baseline"
    return signal(AlertKind.DRIFT, deployment, key, firing, title, "", values, now=clock.now, **kwargs)


def events(alert) -> list[str]:
    return list(alert.notifications.order_by("id").values_list("event", flat=True))


def test_a_drift_signal_fires_one_alert_and_queues_its_email(deployment, clock):
    outcome = drift(deployment, True, clock)
    assert outcome == {"default-drift": "fired"}
    alert = Alert.objects.get()
    assert alert.state == AlertState.FIRING and alert.deployment == deployment and alert.key == "quality"
    assert alert.values["statistic"] == 0.41 and alert.started_at == clock.now
    notification = alert.notifications.get()
    assert notification.event == NotificationEvent.FIRING and notification.recipients == ["oncall@example.org"]
    assert alert.notification_count == 1 and alert.last_notified_at == clock.now
    assert AuditEvent.objects.filter(action="alert.fire", object_id=str(alert.pk)).exists()


def test_the_same_condition_reported_twice_makes_one_alert(deployment, clock):
    drift(deployment, True, clock)
    clock.advance(60)
    assert drift(deployment, True, clock, series=[(clock.now.isoformat(), 0.5)]) == {"default-drift": "ongoing"}
    assert Alert.objects.count() == 1 and Notification.objects.count() == 1
    assert Alert.objects.get().last_seen_at == clock.now


def test_different_keys_and_deployments_are_different_alerts(deployment, clock, actor, model_version, cpu_node):
    other = deployments.create_deployment(actor, name="other", model_version=model_version, node=cpu_node)
    drift(deployment, True, clock, key="quality")
    drift(deployment, True, clock, key="latency")
    drift(other, True, clock, key="quality")
    assert Alert.objects.filter(state=AlertState.FIRING).count() == 3


def test_a_cleared_condition_resolves_the_alert_with_a_resolve_notice(deployment, clock):
    drift(deployment, True, clock)
    clock.advance(300)
    assert drift(deployment, False, clock) == {"default-drift": "resolved"}
    alert = Alert.objects.get()
    assert alert.state == AlertState.RESOLVED and alert.resolved_at == clock.now and alert.resolved_by is None
    assert alert.resolution == "the condition cleared"
    assert events(alert) == [NotificationEvent.FIRING, NotificationEvent.RESOLVED]


def test_a_condition_that_returns_after_clearing_is_a_new_alert(deployment, clock):
    drift(deployment, True, clock)
    drift(deployment, False, clock)
    drift(deployment, True, clock)
    assert list(Alert.objects.order_by("id").values_list("state", flat=True)) == [
        AlertState.RESOLVED,
        AlertState.FIRING,
    ]


def test_a_clear_signal_without_an_alert_does_nothing(deployment, clock):
    assert drift(deployment, False, clock) == {"default-drift": "ok"}
    assert not Alert.objects.exists() and not Notification.objects.exists()


def test_a_for_duration_holds_the_alert_pending_until_the_condition_has_lasted(deployment, clock, actor):
    AlertRule.objects.filter(kind=AlertKind.DRIFT).delete()
    create_rule(actor, name="slow-drift", kind=AlertKind.DRIFT, for_s=120)
    assert drift(deployment, True, clock) == {"slow-drift": "pending"}
    clock.advance(119)
    assert drift(deployment, True, clock) == {"slow-drift": "pending"}
    assert not Alert.objects.exists()
    clock.advance(1)
    assert drift(deployment, True, clock) == {"slow-drift": "fired"}
    assert Alert.objects.get().started_at == clock.now


def test_a_condition_that_clears_while_pending_starts_its_wait_again(deployment, clock, actor):
    AlertRule.objects.filter(kind=AlertKind.DRIFT).delete()
    create_rule(actor, name="slow-drift", kind=AlertKind.DRIFT, for_s=120)
    drift(deployment, True, clock)
    clock.advance(100)
    drift(deployment, False, clock)
    clock.advance(30)
    assert drift(deployment, True, clock) == {"slow-drift": "pending"}
    clock.advance(119)
    assert drift(deployment, True, clock) == {"slow-drift": "pending"}
    assert not Alert.objects.exists()


def test_reminders_come_after_the_repeat_interval_and_not_before(deployment, clock, actor, mailoutbox):
    AlertRule.objects.filter(kind=AlertKind.DRIFT).delete()
    create_rule(actor, name="drift", kind=AlertKind.DRIFT, repeat_interval_s=3600)
    drift(deployment, True, clock)
    deliver_pending_notifications(clock.now)
    clock.advance(3599)
    assert evaluate_alert_rules(clock.now)["reminders"] == 0
    clock.advance(1)
    assert evaluate_alert_rules(clock.now)["reminders"] == 1
    assert evaluate_alert_rules(clock.now)["reminders"] == 0  # not twice for the same interval
    deliver_pending_notifications(clock.now)
    alert = Alert.objects.get()
    assert events(alert) == [NotificationEvent.FIRING, NotificationEvent.REMINDER]
    assert alert.notification_count == 2 and alert.last_notified_at == clock.now
    assert [m.subject.split("]")[0] for m in mailoutbox] == ["[FIRING warning", "[STILL FIRING warning"]
    clock.advance(3600)
    assert evaluate_alert_rules(clock.now)["reminders"] == 1


def test_no_reminder_is_queued_while_the_last_email_is_still_undelivered(deployment, clock, actor):
    AlertRule.objects.filter(kind=AlertKind.DRIFT).delete()
    create_rule(actor, name="drift", kind=AlertKind.DRIFT, repeat_interval_s=600)
    drift(deployment, True, clock)  # never delivered: SMTP is down, say
    clock.advance(3600)
    assert evaluate_alert_rules(clock.now)["reminders"] == 0
    assert Notification.objects.count() == 1


def test_an_acknowledged_alert_gets_no_reminders_but_a_resolve_notice(deployment, clock, actor, mailoutbox):
    AlertRule.objects.filter(kind=AlertKind.DRIFT).delete()
    create_rule(actor, name="drift", kind=AlertKind.DRIFT, repeat_interval_s=600)
    drift(deployment, True, clock)
    deliver_pending_notifications(clock.now)
    alert = acknowledge_alert(actor, Alert.objects.get(), "looking", now=clock.advance(10))
    assert alert.state == AlertState.ACKNOWLEDGED and alert.acknowledged_by == actor.user
    clock.advance(7200)
    assert evaluate_alert_rules(clock.now)["reminders"] == 0
    drift(deployment, True, clock)
    assert Alert.objects.get().state == AlertState.ACKNOWLEDGED  # still the same alert
    drift(deployment, False, clock)
    assert events(Alert.objects.get()) == [NotificationEvent.FIRING, NotificationEvent.RESOLVED]


def test_illegal_transitions_are_conflicts(deployment, clock, actor):
    drift(deployment, True, clock)
    alert = acknowledge_alert(actor, Alert.objects.get())
    with pytest.raises(Conflict, match="only a firing alert"):
        acknowledge_alert(actor, alert)
    resolve_alert(actor, alert, "fixed the router weights")
    with pytest.raises(Conflict, match="already resolved"):
        resolve_alert(actor, alert)
    with pytest.raises(Conflict, match="only a firing alert"):
        acknowledge_alert(actor, alert)


def test_an_operator_resolve_holds_until_the_condition_has_cleared_once(deployment, clock, actor):
    drift(deployment, True, clock)
    alert = resolve_alert(actor, Alert.objects.get(), "known, fixing tomorrow")
    assert alert.resolution == "resolved by operator: known, fixing tomorrow" and alert.resolved_by == actor.user
    assert drift(deployment, True, clock) == {"default-drift": "suppressed"}
    assert Alert.objects.count() == 1
    drift(deployment, False, clock)
    assert drift(deployment, True, clock) == {"default-drift": "fired"}
    assert Alert.objects.count() == 2


def test_the_alert_keeps_what_changed_last_on_the_deployment(deployment, clock, actor):
    deployments.update_deployment(
        actor, deployment, config={"router_weights": [1.0, 1.0, 0.2, 1.0]}, comment="downweight expert 2"
    )
    drift(deployment, True, clock)
    cause = Alert.objects.get().cause
    assert cause["revision"] == 2 and cause["previous_revision"] == 1
    assert cause["router_weights"] == [1.0, 1.0, 0.2, 1.0] and cause["comment"] == "downweight expert 2"
    assert {c["key"] for c in cause["changes"]} == {"router_weights"}
    assert cause["diff_path"] == f"/deployments/{deployment.pk}/?from=1&to=2#diff"
    assert cause["last_event"]["action"] == "deployment.update" and cause["last_event"]["actor"] == "operator"
    assert cause["revision_by"] == "operator" and cause["model_version"] == "demo:v1"
    deployments.update_deployment(actor, deployment, config={"max_batch_size": 4})
    assert Alert.objects.get().cause["revision"] == 2  # stored when it fired, not rewritten


def test_a_rule_covers_only_its_deployment_and_its_checks(deployment, clock, actor, model_version, cpu_node):
    other = deployments.create_deployment(actor, name="other", model_version=model_version, node=cpu_node)
    AlertRule.objects.filter(kind=AlertKind.DRIFT).delete()
    create_rule(
        actor,
        name="latency-drift-on-demo",
        kind=AlertKind.DRIFT,
        deployment=deployment,
        parameters={"checks": ["latency"]},
    )
    assert drift(other, True, clock, key="latency") == {}
    assert drift(deployment, True, clock, key="quality") == {}
    assert drift(deployment, True, clock, key="latency") == {"latency-drift-on-demo": "fired"}


def test_disabling_a_rule_resolves_its_open_alerts(deployment, clock, actor):
    drift(deployment, True, clock)
    update_rule(actor, AlertRule.objects.get(kind=AlertKind.DRIFT), enabled=False)
    alert = Alert.objects.get()
    assert alert.state == AlertState.RESOLVED and alert.resolution == "the rule was disabled"
    assert drift(deployment, True, clock) == {}


def test_a_deleted_default_rule_comes_back_but_a_disabled_one_stays_off(deployment, clock, actor):
    drift(deployment, True, clock)
    update_rule(actor, AlertRule.objects.get(kind=AlertKind.DRIFT), enabled=False)
    assert drift(deployment, True, clock) == {}
    AlertRule.objects.filter(kind=AlertKind.DRIFT).delete()
    assert drift(deployment, True, clock) == {"default-drift": "fired"}


def test_kinds_evaluated_from_rows_cannot_be_signalled(deployment):
    with pytest.raises(ValueError, match="cannot be signalled"):
        signal(AlertKind.LATENCY, deployment, "", True)


def test_a_failed_job_fires_per_job_and_clears_when_it_succeeds(clock):
    assert signal(
        AlertKind.JOB_FAILURE,
        None,
        "session_cleanup",
        True,
        "job session_cleanup failed",
        "Traceback …",
        {"duration_s": 1.5},
        now=clock.now,
    ) == {"default-job-failure": "fired"}
    signal(AlertKind.JOB_FAILURE, None, "drift_checks", True, now=clock.now)
    assert Alert.objects.filter(state=AlertState.FIRING).count() == 2
    signal(AlertKind.JOB_FAILURE, None, "session_cleanup", False, now=clock.advance(60))
    assert Alert.objects.get(key="session_cleanup").state == AlertState.RESOLVED
    assert Alert.objects.get(key="drift_checks").title == "Scheduled job failed (drift_checks) on the control plane"


def test_a_stale_scheduler_heartbeat_fires_and_a_fresh_one_resolves(clock, mailoutbox):
    assert check_scheduler_heartbeat(clock.now, now=clock.advance(100)) is False
    assert not Alert.objects.exists()
    assert check_scheduler_heartbeat(clock.now - timedelta(seconds=301), now=clock.now) is True
    alert = Alert.objects.get(kind=AlertKind.SCHEDULER_HEARTBEAT)
    assert alert.state == AlertState.FIRING and alert.values["heartbeat_age_s"] == 301
    assert len(mailoutbox) == 1 and "scheduler stopped running jobs" in mailoutbox[0].subject  # delivered at once
    assert check_scheduler_heartbeat(clock.now, now=clock.advance(5)) is False
    assert Alert.objects.get().state == AlertState.RESOLVED and len(mailoutbox) == 2


def test_numpy_figures_and_nan_are_stored_as_plain_json(deployment, clock):
    values = {"statistic": np.float32(0.25), "n": np.int64(500), "p": float("nan"), "hist": np.array([1, 2])}
    series = [(i, v) for i, v in enumerate([0.1, float("nan"), np.float64(0.3)])]
    signal(AlertKind.DRIFT, deployment, "distribution", True, values=values, series=series, now=clock.now)
    alert = Alert.objects.get()
    alert.refresh_from_db()
    assert alert.values == {"statistic": 0.25, "n": 500, "p": None, "hist": [1, 2]}
    assert alert.series == [[0, 0.1], [2, 0.3]]
