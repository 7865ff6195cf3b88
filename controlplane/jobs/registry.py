"""The scheduled jobs: one registry (``JOBS``) of ``Job`` entries, each validated when it is registered.

A job is a function without arguments that returns a JSON-ready dict (its result, stored on the run and charted on
the job's page) or None; raising records the run as failed with its traceback. The scheduler (``scheduler.py``)
runs the registry; ``jobs/runs.py`` holds the rules every run follows (one run of a job at a time, records,
alerts on failure).

To add a job: write its function (in its feature's package; the scheduler's own are in ``tasks.py``), import it
here, and register one entry. The features never import the jobs package, so the import makes no cycle::

    JOBS.register(Job("drift_checks", checks.run_scheduled_checks, every_s=900, description="…"))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from django.conf import settings

from controlplane.alerts import delivery, service
from controlplane.drift import checks
from controlplane.extensions import Registry
from controlplane.jobs import tasks
from controlplane.monitoring import history
from controlplane.rollouts import machine

__all__ = ["JOBS", "Job", "Series", "check_job", "get_job"]

UNITS = ("count", "bytes", "s")


class Series(NamedTuple):
    """A number in a job's result to chart over time on the job's page: its key, its label and its unit
    (``count``, ``bytes`` or ``s``)."""

    key: str
    label: str
    unit: str = "count"


@dataclass(frozen=True)
class Job:
    """One scheduled job.

    ``every_s`` (an interval) or ``cron`` (a crontab line in TIME_ZONE) says when it runs. Runs missed while no
    scheduler ran, or while the job's threads were busy, are coalesced into one run when ``coalesce`` is on, which
    still starts if it is at most ``misfire_grace_s`` late (None: however late); later than that it is recorded as
    missed. A run holds the job for at most ``max_runtime_s``: after that it is recorded as failed and the next run
    may start (a thread cannot be killed, so a hung one is given up on, not stopped).
    """

    name: str
    func: Callable[[], dict | None]
    every_s: float | None = None
    cron: str | None = None
    description: str = ""
    coalesce: bool = True
    misfire_grace_s: float | None = 60
    max_runtime_s: float = 600
    series: tuple[Series, ...] = ()

    def make_trigger(self) -> BaseTrigger:
        """A fresh trigger (an interval trigger counts from its creation when it has no previous fire time)."""
        if self.every_s is not None:
            return IntervalTrigger(seconds=self.every_s, timezone=ZoneInfo("UTC"))
        return CronTrigger.from_crontab(self.cron, timezone=ZoneInfo(settings.TIME_ZONE))

    @property
    def schedule(self) -> str:
        return f"every {self.every_s:g} s" if self.every_s is not None else f"cron {self.cron} ({settings.TIME_ZONE})"


def check_job(job: Job) -> None:
    """A job's schedule and limits, checked when it is registered (a bad crontab line fails at import, not at the
    first run)."""
    if not callable(job.func):
        raise ValueError(f"func {job.func!r} is not callable")
    if (job.every_s is None) == (job.cron is None):
        raise ValueError("give every_s or cron, not both or neither")
    if job.every_s is not None and job.every_s <= 0:
        raise ValueError(f"every_s={job.every_s} must be positive")
    if job.max_runtime_s <= 0:
        raise ValueError(f"max_runtime_s={job.max_runtime_s} must be positive")
    if job.misfire_grace_s is not None and job.misfire_grace_s <= 0:
        raise ValueError(f"misfire_grace_s={job.misfire_grace_s} must be positive (None: however late)")
    for series in job.series:
        if series.unit not in UNITS:
            raise ValueError(f"series {series.key}: unit {series.unit!r} is not one of {', '.join(UNITS)}")
    job.make_trigger()


JOBS = Registry[Job]("job", check=check_job)


def get_job(name: str) -> Job:
    """The job called ``name``; ``LookupError`` when there is none."""
    job = JOBS.get(name)
    if job is None:
        raise LookupError(f"there is no job called {name!r}")
    return job


JOBS.register(
    Job(
        "heartbeat",
        tasks.heartbeat,
        every_s=60,
        max_runtime_s=30,
        description="Proves that jobs run; when it stops, the dashboard, /readyz and an alert say so.",
    )
)
JOBS.register(
    Job(
        "expire_sessions",
        tasks.expire_sessions,
        every_s=60,
        max_runtime_s=300,
        description="Expires idle sessions on every running worker (per deployment's session_timeout_s).",
        series=(Series("expired", "Sessions expired"), Series("freed_bytes", "Memory freed", "bytes")),
    )
)
JOBS.register(
    Job(
        "prune_job_runs",
        tasks.prune_job_runs,
        every_s=6 * 3600,
        misfire_grace_s=None,
        description="Deletes job runs older than JOB_RUN_RETENTION_DAYS.",
        series=(Series("deleted", "Runs deleted"),),
    )
)
JOBS.register(
    Job(
        "prune_metrics",
        history.prune,
        every_s=3600,
        misfire_grace_s=None,
        description="Deletes one-minute metric rollups older than METRICS_RETENTION_DAYS.",
        series=(Series("deleted", "Rollups deleted"),),
    )
)
JOBS.register(
    Job(
        "advance_rollouts",
        machine.advance_all,
        every_s=5,
        max_runtime_s=600,
        description="Moves active rollouts on: starts steps, evaluates gates at the end of each bake time, "
        "promotes or rolls back.",
        series=(Series("active", "Active rollouts"),),
    )
)
JOBS.register(
    Job(
        "drift_checks",
        checks.run_scheduled_checks,
        every_s=settings.DRIFT_CHECK_INTERVAL_S,
        max_runtime_s=1800,
        description="Every registered drift check (quality, latency, output distribution…) of every running "
        "deployment against its baseline.",
        series=(Series("drifted", "Checks that found drift"), Series("ok", "Checks without drift")),
    )
)
JOBS.register(
    Job(
        "evaluate_alert_rules",
        service.evaluate_alert_rules,
        every_s=15,
        max_runtime_s=120,
        description="Evaluates the rules of every evaluated alert kind (latency, error rate, worker restarts…); "
        "fires and resolves alerts.",
    )
)
JOBS.register(
    Job(
        "deliver_notifications",
        delivery.deliver_pending_notifications,
        every_s=5,
        max_runtime_s=300,
        description="Sends pending alert e-mails, retrying temporary failures with backoff.",
        series=(Series("sent", "E-mails sent"), Series("failed", "Permanent failures")),
    )
)
