"""Rules evaluated from stored rows: latency and error rate from gateway records, restarts from worker events."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from controlplane.alerts.rules import create_rule
from controlplane.alerts.service import evaluate_alert_rules
from controlplane.choices import AlertKind, AlertState, WorkerEventKind
from controlplane.models import Alert, WorkerEvent
from controlplane.services import deployments

from .conftest import add_requests

pytestmark = pytest.mark.django_db


@pytest.fixture
def latency_rule(actor, deployment):
    return create_rule(
        actor,
        name="slow",
        kind=AlertKind.LATENCY,
        deployment=deployment,
        parameters={"threshold_s": 1.0, "window_s": 300, "min_requests": 20},
        for_s=60,
    )


def test_p95_latency_above_the_threshold_fires_after_the_for_duration(latency_rule, deployment, clock):
    add_requests(deployment, clock.now, count=90, latency_s=0.2)
    add_requests(deployment, clock.now, count=10, latency_s=3.0)  # p95 lies in the slow tail
    assert evaluate_alert_rules(clock.now)["pending"] == 1
    add_requests(deployment, clock.advance(60), count=100, latency_s=2.5)
    assert evaluate_alert_rules(clock.now)["fired"] == 1
    alert = Alert.objects.get(kind=AlertKind.LATENCY)
    expected = np.percentile([0.2] * 90 + [3.0] * 10 + [2.5] * 100, 95)
    assert alert.values["p95_latency_s"] == pytest.approx(expected) and alert.values["requests"] == 200
    assert alert.threshold == 1.0 and alert.title == f"p95 latency {expected:.3g} s (threshold 1 s) on demo-cpu"
    assert alert.series and alert.series_label == "p95 latency (s)"
    assert alert.series[-1][1] == pytest.approx(2.5)


def test_latency_below_the_threshold_or_with_too_few_requests_does_not_fire(latency_rule, deployment, clock):
    add_requests(deployment, clock.now, count=100, latency_s=0.5)
    add_requests(deployment, clock.now - timedelta(seconds=400), count=100, latency_s=9.0)  # outside the window
    add_requests(deployment, clock.now, count=50, latency_s=9.0, cached=True)  # cached answers do not count
    assert evaluate_alert_rules(clock.now).get("pending", 0) == 0
    assert evaluate_alert_rules(clock.advance(600)).get("pending", 0) == 0  # the window moved past them all
    add_requests(deployment, clock.now, count=19, latency_s=9.0)
    assert evaluate_alert_rules(clock.now).get("pending", 0) == 0  # 19 < min_requests
    assert not Alert.objects.filter(kind=AlertKind.LATENCY).exists()


def test_a_latency_alert_resolves_when_requests_are_fast_again(latency_rule, deployment, clock):
    add_requests(deployment, clock.now, count=50, latency_s=3.0)
    evaluate_alert_rules(clock.now)
    evaluate_alert_rules(clock.advance(60))
    assert Alert.objects.get(kind=AlertKind.LATENCY).state == AlertState.FIRING
    add_requests(deployment, clock.advance(400), count=50, latency_s=0.1)
    assert evaluate_alert_rules(clock.now)["resolved"] == 1
    assert Alert.objects.get(kind=AlertKind.LATENCY).state == AlertState.RESOLVED


def test_time_to_first_token_can_be_watched_instead(actor, deployment, clock):
    create_rule(actor, name="ttft", kind=AlertKind.LATENCY, parameters={"threshold_s": 0.5, "metric": "ttft_s"})
    add_requests(deployment, clock.now, count=20, latency_s=0.1, ttft_s=0.9)
    add_requests(deployment, clock.now, count=20, latency_s=9.0)  # no ttft: not streamed, not counted
    evaluate_alert_rules(clock.now)
    alert = Alert.objects.get(kind=AlertKind.LATENCY)
    assert alert.values["p95_ttft_s"] == pytest.approx(0.9) and alert.values["requests"] == 20
    assert "time to first token" in alert.title


@pytest.fixture
def error_rule(actor):
    return create_rule(
        actor, name="errors", kind=AlertKind.ERROR_RATE, parameters={"threshold": 0.1, "min_requests": 20}
    )


def test_an_error_rate_above_the_threshold_fires(error_rule, deployment, clock):
    add_requests(deployment, clock.now, count=70)
    add_requests(deployment, clock.now, count=20, status_code=503, error="worker unavailable")
    add_requests(deployment, clock.now, count=5, status_code=200, error="stream broken")  # failed after headers
    add_requests(deployment, clock.now, count=5, status_code=429, error="rate limited")  # the client's, not ours
    evaluate_alert_rules(clock.now)
    alert = Alert.objects.get(kind=AlertKind.ERROR_RATE)
    assert alert.values == {"error_rate": 0.25, "failed": 25, "requests": 100, "window_s": 300}
    assert alert.title == "error rate 25.0% (threshold 10.0%) on demo-cpu"
    assert alert.series[-1][1] == pytest.approx(0.25)


def test_an_error_rate_needs_the_minimum_number_of_requests(error_rule, deployment, clock):
    add_requests(deployment, clock.now, count=19, status_code=500)
    evaluate_alert_rules(clock.now)
    assert not Alert.objects.filter(kind=AlertKind.ERROR_RATE).exists()


def test_an_error_rate_at_the_threshold_does_not_fire(error_rule, deployment, clock):
    add_requests(deployment, clock.now, count=90)
    add_requests(deployment, clock.now, count=10, status_code=500)
    evaluate_alert_rules(clock.now)
    assert not Alert.objects.filter(kind=AlertKind.ERROR_RATE).exists()


def worker_event(deployment, kind, at, **fields):
    event = WorkerEvent.objects.create(deployment=deployment, kind=kind, message=f"worker {kind}", **fields)
    WorkerEvent.objects.filter(pk=event.pk).update(at=at)  # `at` is set on insert; move it onto the test clock


def test_a_worker_restart_fires_and_resolves_when_the_window_passes(deployment, clock):
    worker_event(deployment, WorkerEventKind.STARTED, clock.now)
    worker_event(deployment, WorkerEventKind.CONFIG_APPLIED, clock.now)
    evaluate_alert_rules(clock.now)
    assert not Alert.objects.exists()
    worker_event(deployment, WorkerEventKind.EXITED, clock.advance(10), exit_code=137, log_tail="Killed\n")
    worker_event(deployment, WorkerEventKind.RESTARTED, clock.advance(2))
    assert evaluate_alert_rules(clock.now)["fired"] == 1
    alert = Alert.objects.get(kind=AlertKind.WORKER_RESTART)
    assert alert.rule.name == "default-worker-restart"
    assert alert.values["restarts_and_exits"] == 2 and alert.values["last_event"] == "restarted"
    assert "restarted or exited 2 times in 15 min" in alert.title
    evaluate_alert_rules(clock.advance(900))
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED


def test_a_rule_for_all_deployments_evaluates_each_one(actor, deployment, model_version, cpu_node, clock):
    other = deployments.create_deployment(actor, name="other", model_version=model_version, node=cpu_node)
    create_rule(actor, name="slow-anywhere", kind=AlertKind.LATENCY, parameters={"threshold_s": 1.0})
    add_requests(deployment, clock.now, count=20, latency_s=0.1)
    add_requests(other, clock.now, count=20, latency_s=5.0)
    evaluate_alert_rules(clock.now)
    assert list(Alert.objects.filter(kind=AlertKind.LATENCY).values_list("deployment__name", flat=True)) == ["other"]


def test_an_alert_whose_deployment_is_deleted_is_resolved(actor, deployment, clock):
    create_rule(actor, name="slow-anywhere", kind=AlertKind.LATENCY, parameters={"threshold_s": 1.0})
    add_requests(deployment, clock.now, count=20, latency_s=5.0)
    evaluate_alert_rules(clock.now)
    type(deployment).objects.filter(pk=deployment.pk).update(current_revision=None)  # no deletion service yet
    deployment.delete()
    evaluate_alert_rules(clock.advance(10))
    alert = Alert.objects.get()
    assert alert.state == AlertState.RESOLVED and alert.resolution == "the deployment was deleted"
    assert alert.deployment_name == "demo-cpu"
