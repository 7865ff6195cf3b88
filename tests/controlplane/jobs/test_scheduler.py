"""The scheduler with its real thread pool: overlap, missed runs, failures, run-now requests and a clean stop.

Runs happen in APScheduler's threads, so these tests commit (transactional_db) and wait for a condition with a
generous deadline instead of sleeping.
"""

import logging
import time
from datetime import timedelta

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from django.utils import timezone

from controlplane.choices import JobOutcome, JobTrigger
from controlplane.jobs import registry as jobs
from controlplane.jobs import status as job_service
from controlplane.jobs.scheduler import Scheduler
from controlplane.models import JobRun, JobRunRequest, JobState, SchedulerLease
from controlplane.services import audit

from .conftest import Gate, add_job, boom

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition, timeout: float = 30.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def scheduler(only_test_jobs, settings):
    settings.SCHEDULER_SHUTDOWN_WAIT_S = 0
    running = Scheduler()
    running.aps.start()
    yield running
    running.stop()


def runs(job: str, outcome: str | None = None):
    """The job's runs, leaving out the history a test planted (no scheduler id)."""
    queryset = JobRun.objects.filter(job=job).exclude(scheduler_id="").order_by("id")
    return list(queryset.filter(outcome=outcome) if outcome else queryset)


def anchor(job: str, started_at):
    """A scheduled run in the history, as a previous scheduler would have left it."""
    return JobRun.objects.create(job=job, started_at=started_at, finished_at=started_at, outcome=JobOutcome.SUCCESS)


def test_a_fire_while_the_job_still_runs_is_skipped_and_logged(monkeypatch, scheduler, caplog):
    gate = add_job(monkeypatch, jobs.Job("slow", Gate(), every_s=3600)).func
    anchor("slow", timezone.now() - timedelta(hours=1))  # due now
    scheduler.step()
    assert gate.entered.wait(30)
    with caplog.at_level(logging.WARNING):
        scheduler.aps.modify_job("slow", next_run_time=timezone.now())
        skipped = wait_for(lambda: runs("slow", JobOutcome.SKIPPED), what="a skipped run")
    assert skipped[0].result == {"reason": "already running"} and "still running" in caplog.text
    gate.release.set()
    assert scheduler.inflight.wait_idle(30)
    assert runs("slow", JobOutcome.SUCCESS) and gate.calls == 1


def test_runs_missed_while_no_scheduler_ran_are_coalesced_into_one(monkeypatch, scheduler):
    calls = []
    add_job(monkeypatch, jobs.Job("tick", lambda: calls.append(1), every_s=60, misfire_grace_s=120))
    anchor("tick", timezone.now() - timedelta(minutes=10))  # ten fire times have passed
    executed = []
    scheduler.aps.add_listener(lambda event: executed.append(event), EVENT_JOB_EXECUTED)
    scheduler.step()
    wait_for(lambda: executed, what="the catch-up run")
    assert calls == [1] and len(runs("tick", JobOutcome.SUCCESS)) == 1 and runs("tick", JobOutcome.MISSED) == []
    scheduler.step()
    next_run = JobState.objects.get(job="tick").next_run_at
    assert timezone.now() < next_run <= timezone.now() + timedelta(seconds=60)


def test_a_run_later_than_its_grace_time_is_recorded_as_missed_and_not_run(monkeypatch, scheduler):
    calls = []
    add_job(monkeypatch, jobs.Job("hourly", lambda: calls.append(1), every_s=3600, misfire_grace_s=60))
    last = timezone.now() - timedelta(hours=2, minutes=30)
    anchor("hourly", last)
    missed = []
    scheduler.aps.add_listener(lambda event: missed.append(event), EVENT_JOB_MISSED)
    scheduler.step()
    wait_for(lambda: runs("hourly", JobOutcome.MISSED), what="the missed record")
    [record] = runs("hourly", JobOutcome.MISSED)
    assert record.scheduled_for == last + timedelta(hours=2), "coalesced: only the latest due time is reported"
    assert record.result["late_by_s"] >= 1800 and calls == []
    scheduler.step()
    assert JobState.objects.get(job="hourly").next_run_at == last + timedelta(hours=3)


def test_a_failing_job_is_recorded_and_the_scheduler_runs_on(monkeypatch, scheduler, signals):
    add_job(monkeypatch, jobs.Job("fragile", boom, every_s=3600))
    add_job(monkeypatch, jobs.Job("steady", lambda: {"ok": True}, every_s=3600))
    for name in ("fragile", "steady"):
        anchor(name, timezone.now() - timedelta(hours=1))
    done = []  # APScheduler reports a run once its thread is free again
    scheduler.aps.add_listener(lambda event: done.append(event.job_id), EVENT_JOB_EXECUTED)
    scheduler.step()
    wait_for(lambda: sorted(done) == ["fragile", "steady"], what="both runs")
    assert runs("steady", JobOutcome.SUCCESS) and "RuntimeError" in runs("fragile", JobOutcome.FAILED)[0].traceback
    assert signals[0]["kind"] == "job_failure" and signals[0]["key"] == "fragile"
    scheduler.aps.modify_job("fragile", next_run_time=timezone.now())
    wait_for(lambda: done.count("fragile") == 2, what="the next run of the failing job")
    assert len(runs("fragile", JobOutcome.FAILED)) == 2 and scheduler.aps.running and scheduler.is_leader


def test_the_leader_takes_run_now_requests_and_runs_them_in_its_threads(monkeypatch, scheduler, operator):
    add_job(monkeypatch, jobs.Job("report", lambda: {"rows": 3}, every_s=3600))
    scheduler.step()
    answer = job_service.request_run(audit.Actor(operator, "api"), "report")
    assert answer.request is not None and answer.run is None
    scheduler.step()
    request = wait_for(lambda: JobRunRequest.objects.exclude(run=None).first(), what="the requested run")
    assert request.claimed_by == scheduler.id
    run = request.run
    assert run.trigger == JobTrigger.MANUAL and run.result == {"rows": 3} and run.requested_by == operator


def test_stopping_records_a_run_that_did_not_finish_as_interrupted_and_releases_the_lock(monkeypatch, scheduler):
    gate = add_job(monkeypatch, jobs.Job("slow", Gate(), every_s=3600)).func
    anchor("slow", timezone.now() - timedelta(hours=1))
    scheduler.step()
    assert gate.entered.wait(30)
    scheduler.stop()
    [run] = runs("slow")
    assert run.outcome == JobOutcome.FAILED and "interrupted" in run.error
    assert SchedulerLease.objects.get().owner == ""
    gate.release.set()
    assert scheduler.inflight.wait_idle(30)
    assert runs("slow")[0].outcome == JobOutcome.FAILED, "finishing late does not rewrite the outcome"
