"""Running a job and recording the run: the rules every runner follows (the leading scheduler, or an inline run-now).

- One run of a job at a time, across processes: a run starts only after claiming the job's ``JobState`` row with a
  conditional UPDATE (free, or its claim has lapsed after ``max_runtime_s``); otherwise it is recorded as skipped.
- A failing job is recorded with its traceback and signalled as a ``job_failure`` alert (cleared by the next
  success); the exception never reaches the scheduler, and neither does a failure of the alerts themselves.
- Every run, skipped and missed run is a ``JobRun`` row.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q
from django.utils import timezone

from controlplane.alerts import service as alerts
from controlplane.choices import AlertKind, JobOutcome, JobTrigger
from controlplane.jobs import registry as jobs
from controlplane.models import JobRun, JobState

logger = logging.getLogger(__name__)

__all__ = [
    "Clock",
    "abandon_runs",
    "claim",
    "ensure_states",
    "execute",
    "lapse_overdue",
    "last_fire",
    "record_missed",
    "record_skipped",
    "release_claims_of_others",
    "runner_id",
]

Clock = Callable[[], datetime]
SCHEDULER_PREFIX = "scheduler:"
INLINE_PREFIX = "inline:"


def runner_id(kind: str = "scheduler") -> str:
    """Who runs jobs: ``scheduler:host:pid:random`` for a scheduler, ``inline:host:pid`` for a run-now without one."""
    base = f"{socket.gethostname()[:60]}:{os.getpid()}"
    return f"{INLINE_PREFIX}{base}" if kind == "inline" else f"{SCHEDULER_PREFIX}{base}:{secrets.token_hex(3)}"


def ensure_states(names) -> None:
    JobState.objects.bulk_create([JobState(job=name) for name in names], ignore_conflicts=True)


def claim(name: str, run: JobRun, owner: str, now: datetime, max_runtime_s: float) -> bool:
    """Hold job ``name`` for ``run``: True when it was free (or its last claim lapsed) and is now ``run``'s."""
    ensure_states([name])
    free = Q(running_run__isnull=True) | Q(claim_expires_at__lte=now)
    lapse = now + timedelta(seconds=max_runtime_s)
    return (
        JobState.objects.filter(free, job=name).update(running_run=run, claimed_by=owner, claim_expires_at=lapse) == 1
    )


def execute(
    name: str,
    *,
    owner: str,
    trigger: str = JobTrigger.SCHEDULE,
    clock: Clock = timezone.now,
    requested_by_id: int | None = None,
) -> JobRun:
    """Run job ``name`` now in this thread, unless it is running already; returns the recorded run."""
    job = jobs.get_job(name)
    now = clock()
    run = JobRun.objects.create(
        job=name, trigger=trigger, started_at=now, scheduler_id=owner, requested_by_id=requested_by_id
    )
    if not claim(name, run, owner, now, job.max_runtime_s):
        holder: Mapping[str, Any] = (
            JobState.objects.filter(job=name).values("running_run_id", "claimed_by").first() or {}
        )
        logger.warning("job %s skipped: run %s is still running in %s", name, holder.get("running_run_id"), owner)
        reason = {"reason": "already running", "running_run": holder.get("running_run_id")}
        return _finish(run, JobOutcome.SKIPPED, now, 0.0, result={**reason, "running_in": holder.get("claimed_by")})
    previous = JobState.objects.filter(job=name).values_list("last_run__outcome", flat=True).first()
    started = time.perf_counter()
    result: dict = {}
    outcome, error, trace = JobOutcome.FAILED, "interrupted", ""
    try:
        outcome, result, error, trace = _call(job)
    finally:
        run = _finish(run, outcome, clock(), time.perf_counter() - started, result, error, trace)
        JobState.objects.filter(job=name, running_run=run).update(
            running_run=None, claimed_by="", claim_expires_at=None, last_run=run
        )
    _signal_outcome(run, previous)
    return run


def _call(job: jobs.Job) -> tuple[JobOutcome, dict, str, str]:
    try:
        value = job.func()
        result = json.loads(json.dumps({} if value is None else value, cls=DjangoJSONEncoder))
        if not isinstance(result, dict):
            raise TypeError(f"a job returns a dict or None, not {type(value).__name__}")
    except Exception as exc:
        logger.exception("job %s failed", job.name)
        return JobOutcome.FAILED, {}, f"{type(exc).__name__}: {exc}"[:500], traceback.format_exc()
    return JobOutcome.SUCCESS, result, "", ""


def _finish(run, outcome, now, duration_s, result=None, error="", trace="") -> JobRun:
    """Close a run. A run already closed by someone else (given up on after its max runtime, or lost with its
    scheduler) keeps that outcome; its real end is still recorded."""
    fields = {"finished_at": now, "duration_s": round(duration_s, 6), "result": result or {}}
    closed = JobRun.objects.filter(pk=run.pk, outcome=JobOutcome.RUNNING)
    if not closed.update(outcome=outcome, error=error, traceback=trace, **fields):
        logger.warning("job %s run %s finished after it was given up on; it keeps its outcome", run.job, run.pk)
        JobRun.objects.filter(pk=run.pk).update(**fields)
    run.refresh_from_db()
    return run


def tell_alerts(name: str, firing: bool, title: str, summary: str, values: dict) -> None:
    """Fire (or clear) job ``name``'s ``job_failure`` alert. A failing alert service is logged: it never breaks
    a run's bookkeeping."""
    try:
        alerts.signal(AlertKind.JOB_FAILURE, None, name, firing, title, summary, values)
    except Exception:
        logger.exception("signalling the job_failure alert of %s failed", name)


def _signal_outcome(run: JobRun, previous: str | None) -> None:
    values = {"run": run.pk, "duration_s": run.duration_s, "error": run.error}
    if run.outcome == JobOutcome.FAILED:
        tell_alerts(run.job, True, f"Job {run.job} failed", run.error, values)
    elif run.outcome == JobOutcome.SUCCESS and previous == JobOutcome.FAILED:
        tell_alerts(run.job, False, f"Job {run.job} succeeds again", "", values)


def _close_record(name, outcome, owner, now, *, scheduled_for=None, result=None) -> JobRun:
    return JobRun.objects.create(
        job=name,
        outcome=outcome,
        started_at=now,
        finished_at=now,
        duration_s=0.0,
        scheduled_for=scheduled_for,
        scheduler_id=owner,
        result=result or {},
    )


def record_missed(name: str, scheduled_for: datetime, owner: str, now: datetime) -> JobRun:
    """A fire time that came later than the job's misfire grace time allows: recorded, not run."""
    late = (now - scheduled_for).total_seconds()
    logger.warning("job %s missed its run due at %s (%.0f s late)", name, scheduled_for.isoformat(), late)
    return _close_record(
        name, JobOutcome.MISSED, owner, now, scheduled_for=scheduled_for, result={"late_by_s": round(late, 3)}
    )


def record_skipped(name: str, owner: str, now: datetime, *, scheduled_for: datetime | None = None) -> JobRun:
    """A fire time at which the job was still running in this scheduler."""
    logger.warning("job %s skipped: it is still running in %s", name, owner)
    result = {"reason": "already running"}
    return _close_record(name, JobOutcome.SKIPPED, owner, now, scheduled_for=scheduled_for, result=result)


def last_fire(name: str) -> datetime | None:
    """When the schedule last fired this job (run, skipped or missed), in any scheduler: the anchor a new leader
    continues the schedule from, so a failover neither repeats nor forgets a run."""
    row = (
        JobRun.objects.filter(job=name, trigger=JobTrigger.SCHEDULE)
        .order_by("-started_at", "-id")
        .values_list("scheduled_for", "started_at")
        .first()
    )
    return (row[0] or row[1]) if row else None


def _give_up(states, now: datetime, message: str) -> int:
    """Close the running runs of ``states`` as failed with ``message`` and free the jobs."""
    count = 0
    for state in states:
        run_id, name = state.running_run_id, state.job
        if JobState.objects.filter(job=name, running_run_id=run_id).update(
            running_run=None, claimed_by="", claim_expires_at=None, last_run_id=run_id
        ):
            count += JobRun.objects.filter(pk=run_id, outcome=JobOutcome.RUNNING).update(
                outcome=JobOutcome.FAILED, error=message[:500], finished_at=now
            )
            logger.error("job %s run %s: %s", name, run_id, message)
            tell_alerts(name, True, f"Job {name} failed", message, {"run": run_id, "error": message})
    return count


def lapse_overdue(now: datetime) -> int:
    """Give up on runs that have held their job past its max runtime (a hung thread, a vanished inline runner)."""
    overdue = JobState.objects.filter(running_run__isnull=False, claim_expires_at__lte=now)
    return _give_up(list(overdue), now, "ran past its max runtime and was given up on")


def release_claims_of_others(owner: str, now: datetime) -> int:
    """A new leader frees the jobs that other schedulers still hold: only the leader runs scheduled jobs, so those
    runs were lost with their scheduler. Inline runs are left to their max runtime."""
    held = JobState.objects.filter(running_run__isnull=False, claimed_by__startswith=SCHEDULER_PREFIX)
    return _give_up(list(held.exclude(claimed_by=owner)), now, "lost: its scheduler stopped renewing its lease")


def abandon_runs(owner: str, now: datetime) -> int:
    """On stop: the runs of ``owner`` that did not finish in time are recorded as interrupted."""
    held = JobState.objects.filter(running_run__isnull=False, claimed_by=owner)
    return _give_up(list(held), now, "interrupted: the scheduler stopped while it ran")
