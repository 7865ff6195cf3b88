"""The scheduler's heartbeat: judged from the lock row; stale → banner, /readyz report, alert; back → cleared."""

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.alerts import service as alerts
from controlplane.alerts.rules import ensure_default_rules
from controlplane.choices import AlertKind, AlertState, SchedulerState
from controlplane.jobs import heartbeat, lease, tasks
from controlplane.jobs.heartbeat import HeartbeatWatcher, scheduler_health
from controlplane.jobs.scheduler import HeartbeatWatch
from controlplane.models import Alert, AlertRule, SchedulerLease

pytestmark = pytest.mark.django_db

THRESHOLD = 180


@pytest.fixture(autouse=True)
def threshold(settings):
    settings.SCHEDULER_STALE_AFTER_S = THRESHOLD


def beat(clock) -> None:
    """What a running scheduler does: renew its lock, and its heartbeat job stamps the row."""
    lease.acquire("scheduler:a", clock(), 30)
    SchedulerLease.objects.update(jobs_heartbeat_at=clock())


def test_no_lock_row_means_no_scheduler_has_run(clock):
    health = scheduler_health(clock())
    assert health.state == SchedulerState.NEVER_RAN and health.stale and "No scheduler" in health.message


def test_a_scheduler_that_renews_and_runs_its_heartbeat_job_is_running(clock):
    beat(clock)
    clock.advance(THRESHOLD)
    health = scheduler_health(clock())
    assert health.state == SchedulerState.RUNNING and not health.stale and health.owner == "scheduler:a"


def test_a_scheduler_that_stopped_renewing_is_stale_after_the_threshold(clock):
    beat(clock)
    clock.advance(THRESHOLD + 1)
    health = scheduler_health(clock())
    assert health.state == SchedulerState.STOPPED and health.loop_age_s == THRESHOLD + 1
    assert "not renewed its lock for 181 s" in health.message


def test_a_scheduler_alive_whose_jobs_do_not_run_is_stuck(clock):
    beat(clock)
    for _ in range(40):  # the loop renews every 5 s, but the heartbeat job never runs again
        clock.advance(5)
        lease.acquire("scheduler:a", clock(), 30)
    assert scheduler_health(clock()).state == SchedulerState.STUCK


def test_a_new_leader_gets_the_threshold_to_prove_its_jobs_run(clock):
    beat(clock)
    clock.advance(3600)  # the old scheduler died an hour ago
    lease.acquire("scheduler:b", clock(), 30)
    clock.advance(THRESHOLD - 1)
    lease.acquire("scheduler:b", clock(), 30)
    assert scheduler_health(clock()).state == SchedulerState.RUNNING
    clock.advance(2)
    lease.acquire("scheduler:b", clock(), 30)
    assert scheduler_health(clock()).state == SchedulerState.STUCK


def test_the_heartbeat_job_stamps_the_row_only_while_a_scheduler_holds_the_lock():
    assert tasks.heartbeat() == {"recorded": False}
    now = timezone.now()
    lease.acquire("scheduler:a", now, 30)
    assert tasks.heartbeat() == {"recorded": True}
    assert SchedulerLease.objects.get().jobs_heartbeat_at >= now
    lease.release("scheduler:a", timezone.now())
    assert tasks.heartbeat() == {"recorded": False}, "run inline without a scheduler, it cannot hide a dead one"


@pytest.fixture
def handed(monkeypatch) -> list[tuple]:
    """What the watcher hands the alerts' watchdog entry: (last sign of life, now) at each check."""
    calls: list[tuple] = []
    monkeypatch.setattr(alerts, "check_scheduler_heartbeat", lambda last, now=None: calls.append((last, now)))
    return calls


def test_the_alert_fires_when_jobs_stop_and_clears_when_they_run_again(clock):
    ensure_default_rules()
    max_age_s = AlertRule.objects.get(kind=AlertKind.SCHEDULER_HEARTBEAT).parameters["max_age_s"]
    watcher = HeartbeatWatcher(started_at=clock() - timedelta(hours=1))
    beat(clock)
    watcher.check(clock())
    assert not Alert.objects.exists()
    clock.advance(max_age_s + 1)
    watcher.check(clock())
    watcher.check(clock.advance(15))
    alert = Alert.objects.get()
    assert alert.kind == AlertKind.SCHEDULER_HEARTBEAT and alert.state == AlertState.FIRING
    assert alert.key == "scheduler" and alert.deployment is None
    beat(clock)
    watcher.check(clock())
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and Alert.objects.count() == 1


def test_a_just_started_watcher_gives_a_starting_scheduler_the_threshold_before_it_fires(clock, handed):
    watch = HeartbeatWatch(clock=clock)
    watch.step()
    assert handed == []
    clock.advance(THRESHOLD)
    watch.step()
    assert handed == [(None, clock())]


def test_readyz_reports_a_stale_scheduler_without_failing(as_operator):
    response = as_operator.get("/readyz")
    assert response.status_code == 200
    report = response.json()["checks"]["scheduler"]
    assert report["ok"] and report["stale"] and report["state"] == SchedulerState.NEVER_RAN


def test_a_failing_alerts_service_never_breaks_the_watcher(monkeypatch, clock, caplog):
    def broken(*args, **kwargs):
        raise ConnectionError("smtp down")

    monkeypatch.setattr(alerts, "check_scheduler_heartbeat", broken)
    watcher = heartbeat.HeartbeatWatcher(started_at=clock() - timedelta(hours=1))
    assert watcher.check(clock()).state == SchedulerState.NEVER_RAN
    assert "smtp down" in caplog.text


def test_every_check_hands_the_alerts_the_last_sign_of_life(clock, handed):
    watcher = HeartbeatWatcher(started_at=clock() - timedelta(hours=1))
    beat(clock)
    beaten_at = clock()
    for _ in range(3):  # the loop keeps renewing; the heartbeat job has not run again
        clock.advance(15)
        lease.acquire("scheduler:a", clock(), 30)
        watcher.check(clock())
    assert handed == [(beaten_at, beaten_at + timedelta(seconds=15 * n)) for n in (1, 2, 3)]
