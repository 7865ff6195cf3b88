"""A run's rules: recorded with its result, one at a time across runners, failures kept with their traceback."""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.choices import JobOutcome, JobTrigger
from controlplane.jobs import registry as jobs
from controlplane.jobs import runs as jobruns
from controlplane.jobs import tasks
from controlplane.models import JobRun, JobRunRequest, JobState

from .conftest import add_job, boom

pytestmark = pytest.mark.django_db


@pytest.fixture
def counting(monkeypatch):
    calls = []

    def count() -> dict:
        calls.append(1)
        return {"expired": len(calls), "when": timezone.now()}

    add_job(monkeypatch, jobs.Job("count", count, every_s=60, max_runtime_s=10))
    return calls


def test_a_run_is_recorded_with_its_result_duration_and_runner(counting, clock):
    run = jobruns.execute("count", owner="scheduler:a", clock=clock)
    assert run.outcome == JobOutcome.SUCCESS and run.trigger == JobTrigger.SCHEDULE
    assert run.result["expired"] == 1 and isinstance(run.result["when"], str)
    assert run.started_at == clock() and run.duration_s >= 0 and run.scheduler_id == "scheduler:a"
    state = JobState.objects.get(job="count")
    assert state.last_run == run and state.running_run is None


def test_a_failing_job_is_recorded_with_its_traceback_and_raises_an_alert_that_the_next_success_clears(
    monkeypatch, clock, signals
):
    add_job(monkeypatch, jobs.Job("fragile", boom, every_s=60))
    run = jobruns.execute("fragile", owner="scheduler:a", clock=clock)
    assert run.outcome == JobOutcome.FAILED
    assert run.error == "RuntimeError: the disk is on fire"
    assert "Traceback" in run.traceback and "boom" in run.traceback
    assert signals == [
        {"kind": "job_failure", "deployment": None, "key": "fragile", "firing": True, "title": "Job fragile failed"}
    ]
    add_job(monkeypatch, jobs.Job("fragile", lambda: None, every_s=60))
    assert jobruns.execute("fragile", owner="scheduler:a", clock=clock).outcome == JobOutcome.SUCCESS
    assert [s["firing"] for s in signals] == [True, False]
    jobruns.execute("fragile", owner="scheduler:a", clock=clock)
    assert len(signals) == 2, "a success after a success signals nothing"


def test_a_job_that_returns_something_other_than_a_dict_fails(monkeypatch, clock):
    add_job(monkeypatch, jobs.Job("odd", lambda: [1, 2], every_s=60))
    run = jobruns.execute("odd", owner="scheduler:a", clock=clock)
    assert run.outcome == JobOutcome.FAILED and "dict" in run.error


def test_a_job_running_elsewhere_is_skipped_and_the_skip_is_recorded_and_logged(counting, clock, caplog):
    elsewhere = JobRun.objects.create(job="count", started_at=clock(), scheduler_id="inline:host:1")
    assert jobruns.claim("count", elsewhere, "inline:host:1", clock(), max_runtime_s=10)
    with caplog.at_level(logging.WARNING):
        run = jobruns.execute("count", owner="scheduler:a", clock=clock)
    assert run.outcome == JobOutcome.SKIPPED and counting == []
    assert run.result == {"reason": "already running", "running_run": elsewhere.pk, "running_in": "inline:host:1"}
    assert "skipped" in caplog.text
    assert JobState.objects.get(job="count").running_run == elsewhere


def test_a_run_past_its_max_runtime_is_given_up_on_and_the_job_can_run_again(counting, clock, signals):
    hung = JobRun.objects.create(job="count", started_at=clock(), scheduler_id="inline:host:1")
    jobruns.claim("count", hung, "inline:host:1", clock(), max_runtime_s=10)
    clock.advance(9)
    assert jobruns.lapse_overdue(clock()) == 0
    clock.advance(1)
    assert jobruns.lapse_overdue(clock()) == 1
    hung.refresh_from_db()
    assert hung.outcome == JobOutcome.FAILED and "max runtime" in hung.error
    assert signals[-1]["key"] == "count" and signals[-1]["firing"]
    assert jobruns.execute("count", owner="scheduler:a", clock=clock).outcome == JobOutcome.SUCCESS


def test_a_run_given_up_on_keeps_its_outcome_when_it_finishes_after_all(counting, clock):
    run = JobRun.objects.create(job="count", started_at=clock(), scheduler_id="scheduler:a")
    JobRun.objects.filter(pk=run.pk).update(outcome=JobOutcome.FAILED, error="given up")
    finished = jobruns._finish(run, JobOutcome.SUCCESS, clock.advance(5), 5.0, {"expired": 1})
    assert finished.outcome == JobOutcome.FAILED and finished.duration_s == 5.0 and finished.result == {"expired": 1}


def test_missed_runs_are_recorded_with_the_time_they_were_due_and_anchor_the_schedule(counting, clock):
    due = clock() - timedelta(minutes=30)
    run = jobruns.record_missed("count", due, "scheduler:a", clock())
    assert run.outcome == JobOutcome.MISSED and run.scheduled_for == due and run.result == {"late_by_s": 1800.0}
    assert jobruns.last_fire("count") == due
    assert jobruns.last_fire("never-ran") is None


def test_pruning_deletes_old_runs_and_requests_but_keeps_each_jobs_last_run(counting, clock):
    first = jobruns.execute("count", owner="scheduler:a", clock=clock)
    second = jobruns.execute("count", owner="scheduler:a", clock=clock)
    JobRunRequest.objects.create(job="count", requested_at=clock(), claimed_at=clock(), run=first)
    clock.advance(15 * 86400)
    recent = jobruns.record_missed("count", clock(), "scheduler:a", clock())
    result = tasks.prune_runs(clock(), keep_days=14)
    assert result["deleted"] == 1 and result["requests_deleted"] == 1
    assert set(JobRun.objects.values_list("pk", flat=True)) == {second.pk, recent.pk}
    assert JobState.objects.get(job="count").last_run == second
