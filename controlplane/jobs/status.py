"""What the API and the dashboard ask of the jobs: their table with last and next runs, a job's history, and
"run it now" — handed to the leading scheduler when one runs, run inline (in the caller's thread) when none does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from controlplane.choices import JobOutcome, JobTrigger
from controlplane.jobs import lease
from controlplane.jobs import registry as jobs
from controlplane.jobs import runs as jobruns
from controlplane.models import JobRun, JobRunRequest, JobState
from controlplane.services import audit
from controlplane.services.errors import Conflict

__all__ = ["JobStatus", "RunNow", "history", "job_status", "job_statuses", "request_run", "take_requests"]


@dataclass
class JobStatus:
    """One row of the job table."""

    job: jobs.Job
    last_run: JobRun | None
    running_run: JobRun | None
    next_run_at: datetime | None
    requested: bool

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def running(self) -> bool:
        return self.running_run is not None


@dataclass
class RunNow:
    """The answer to "run it now": a request the scheduler will take, or the run made inline."""

    request: JobRunRequest | None = None
    run: JobRun | None = None


def job_statuses(names: list[str] | None = None, *, now: datetime | None = None) -> list[JobStatus]:
    """The job table in registration order, in two queries."""
    now = now or timezone.now()
    names = jobs.JOBS.names() if names is None else names
    states = {s.job: s for s in JobState.objects.filter(job__in=names).select_related("last_run", "running_run")}
    requested = set(JobRunRequest.objects.filter(job__in=names, claimed_at__isnull=True).values_list("job", flat=True))
    rows = []
    for name in names:
        state = states.get(name)
        running = state.running_run if state and state.claim_expires_at and state.claim_expires_at > now else None
        last_run, next_run_at = (state.last_run, state.next_run_at) if state else (None, None)
        rows.append(JobStatus(jobs.JOBS[name], last_run, running, next_run_at, name in requested))
    return rows


def job_status(name: str, *, now: datetime | None = None) -> JobStatus:
    """One job's row; ``LookupError`` for an unknown job."""
    jobs.get_job(name)
    return job_statuses([name], now=now)[0]


def history(name: str, limit: int = 200) -> list[JobRun]:
    """The job's latest runs, oldest first (for charts)."""
    return list(reversed(JobRun.objects.filter(job=name).select_related("requested_by")[:limit]))


def request_run(actor: audit.Actor, name: str, *, clock: jobruns.Clock = timezone.now) -> RunNow:
    """Run job ``name`` now: by the leading scheduler (a request it takes within a second or two) or, when no
    scheduler leads, here and now. ``LookupError`` for an unknown job; ``Conflict`` when it is running or already
    requested."""
    jobs.get_job(name)
    now = clock()
    status = job_status(name, now=now)
    run = status.running_run
    if run is not None:  # status.running
        raise Conflict(f"Job {name} is already running (run {run.pk}, started {run.started_at:%Y-%m-%d %H:%M:%S}).")
    if status.requested:
        raise Conflict(f"Job {name} has already been asked to run; the scheduler will start it in a moment.")
    user = actor.user if actor.user is not None and actor.user.pk else None
    if lease.holder(now) is not None:
        with transaction.atomic():
            request = JobRunRequest.objects.create(job=name, requested_by=user, requested_at=now)
            after = {"request": request.pk, "by": "scheduler"}
            audit.record(actor, "job.run", object_type="job", object_id=name, object_repr=name, after=after)
        return RunNow(request=request)
    owner = jobruns.runner_id("inline")
    user_id = user.pk if user else None
    run = jobruns.execute(name, owner=owner, trigger=JobTrigger.MANUAL, clock=clock, requested_by_id=user_id)
    if run.outcome == JobOutcome.SKIPPED:
        raise Conflict(f"Job {name} is already running (it started a moment ago).")
    after = {"run": run.pk, "by": "inline", "outcome": run.outcome}
    audit.record(actor, "job.run", object_type="job", object_id=name, object_repr=name, after=after)
    return RunNow(run=run)


def take_requests(owner: str, now: datetime, limit: int = 20) -> list[JobRunRequest]:
    """The leader claims the pending run-now requests, each with a conditional UPDATE."""
    taken = []
    for request in JobRunRequest.objects.filter(claimed_at__isnull=True)[:limit]:
        pending = JobRunRequest.objects.filter(pk=request.pk, claimed_at__isnull=True)
        if pending.update(claimed_at=now, claimed_by=owner):
            taken.append(request)
    return taken
