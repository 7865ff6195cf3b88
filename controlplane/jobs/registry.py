"""The scheduled jobs: one table (``REGISTRY``) and the jobs written here, each a plain function a test can call.

A job is a function without arguments that returns a JSON-ready dict (its result, stored on the run and charted on
the job's page) or None; raising records the run as failed with its traceback. The scheduler (``scheduler.py``)
runs the table; ``jobs/runs.py`` holds the rules every run follows (one run of a job at a time, records,
alerts on failure).

To add a job, add one line to ``REGISTRY``. The function may live anywhere; name it ``"package.module:function"``
to import it only when it runs (no import cycles, no heavy imports at start-up)::

    Job("drift_checks", "controlplane.stats.drift:run_scheduled_checks", every_s=900, description="…"),
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from django.conf import settings
from django.utils import timezone

from controlplane.choices import WorkerReply
from controlplane.models import Deployment, SchedulerLease
from controlplane.workers.client import WorkerClient, WorkerError, WorkerUnavailable

__all__ = ["JOBS", "REGISTRY", "Job", "Series", "expire_sessions", "get_job", "heartbeat", "prune_job_runs"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")


class Series(NamedTuple):
    """A number in a job's result to chart over time on the job's page: its key, its label and its unit
    (``count``, ``bytes`` or ``s``)."""

    key: str
    label: str
    unit: str = "count"


@dataclass(frozen=True)
class Job:
    """One line of the job table.

    ``every_s`` (an interval) or ``cron`` (a crontab line in TIME_ZONE) says when it runs. Runs missed while no
    scheduler ran, or while the job's threads were busy, are coalesced into one run when ``coalesce`` is on, which
    still starts if it is at most ``misfire_grace_s`` late (None: however late); later than that it is recorded as
    missed. A run holds the job for at most ``max_runtime_s``: after that it is recorded as failed and the next run
    may start (a thread cannot be killed, so a hung one is given up on, not stopped).
    """

    name: str
    func: Callable[[], dict | None] | str
    every_s: float | None = None
    cron: str | None = None
    description: str = ""
    coalesce: bool = True
    misfire_grace_s: float | None = 60
    max_runtime_s: float = 600
    series: tuple[Series, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"job name {self.name!r} must be lower-case letters, digits and underscores")
        if (self.every_s is None) == (self.cron is None):
            raise ValueError(f"job {self.name}: give every_s or cron, not both or neither")
        if self.every_s is not None and self.every_s <= 0:
            raise ValueError(f"job {self.name}: every_s={self.every_s} must be positive")
        if self.max_runtime_s <= 0:
            raise ValueError(f"job {self.name}: max_runtime_s={self.max_runtime_s} must be positive")
        self.make_trigger()  # a bad crontab line fails at import, not at the first run

    def make_trigger(self) -> BaseTrigger:
        """A fresh trigger (an interval trigger counts from its creation when it has no previous fire time)."""
        if self.every_s is not None:
            return IntervalTrigger(seconds=self.every_s, timezone=ZoneInfo("UTC"))
        return CronTrigger.from_crontab(self.cron, timezone=ZoneInfo(settings.TIME_ZONE))

    @property
    def schedule(self) -> str:
        return f"every {self.every_s:g} s" if self.every_s is not None else f"cron {self.cron} ({settings.TIME_ZONE})"

    def function(self) -> Callable[[], dict | None]:
        if callable(self.func):
            return self.func
        module, _, attribute = self.func.partition(":")
        return getattr(importlib.import_module(module), attribute)


# --- the jobs written here ---------------------------------------------------------------------------------------
def heartbeat() -> dict:
    """Prove that jobs run: stamp the lock row while a scheduler holds it. Run inline without a leading scheduler
    (from the API, say) it stamps nothing, so it cannot hide a dead scheduler."""
    from controlplane.jobs.lease import LOCK

    now = timezone.now()
    stamped = SchedulerLease.objects.filter(name=LOCK, expires_at__gt=now).exclude(owner="")
    return {"recorded": stamped.update(jobs_heartbeat_at=now) == 1}


def prune_job_runs() -> dict:
    """Delete job runs older than JOB_RUN_RETENTION_DAYS (each job's last and running run stay)."""
    from controlplane.jobs.runs import prune_runs

    return prune_runs(timezone.now(), settings.JOB_RUN_RETENTION_DAYS)


def expire_sessions() -> dict:
    """Ask every running worker to expire the sessions idle longer than its deployment's ``session_timeout_s`` and
    record, per deployment, how many sessions it expired and how many bytes it freed. A worker that does not answer
    is recorded as such and the others are still asked."""
    totals = {"expired": 0, "freed_bytes": 0, "workers": 0, "unavailable": 0, "errors": 0}
    per_deployment = {}
    for deployment in Deployment.objects.exclude(worker_url="").select_related("current_revision").order_by("name"):
        entry = _expire_on(deployment)
        per_deployment[deployment.name] = entry
        totals["workers"] += 1
        totals["expired"] += entry.get("expired", 0)
        totals["freed_bytes"] += entry.get("freed_bytes", 0)
        totals["unavailable"] += entry["status"] == WorkerReply.UNAVAILABLE
        totals["errors"] += entry["status"] == WorkerReply.ERROR
    return {**totals, "deployments": per_deployment}


def _expire_on(deployment: Deployment) -> dict:
    idle_s = deployment.config.get("session_timeout_s")
    client = WorkerClient.for_deployment(deployment.pk, deployment.worker_url)
    try:
        answer = client.expire_sessions(idle_s=idle_s)
        expired, freed = int(answer["expired"]), int(answer["freed_bytes"])
    except WorkerUnavailable as exc:
        return {"status": WorkerReply.UNAVAILABLE, "idle_s": idle_s, "error": str(exc)[:300]}
    except WorkerError as exc:
        return {"status": WorkerReply.ERROR, "idle_s": idle_s, "error": str(exc)[:300]}
    except (KeyError, TypeError, ValueError) as exc:
        return {"status": WorkerReply.ERROR, "idle_s": idle_s, "error": f"unexpected answer: {exc!r}"[:300]}
    finally:
        client.close()
    return {"status": WorkerReply.OK, "idle_s": idle_s, "expired": expired, "freed_bytes": freed}


# --- the table ---------------------------------------------------------------------------------------------------
REGISTRY: tuple[Job, ...] = (
    Job(
        "heartbeat",
        heartbeat,
        every_s=60,
        max_runtime_s=30,
        description="Proves that jobs run; when it stops, the dashboard, /readyz and an alert say so.",
    ),
    Job(
        "expire_sessions",
        expire_sessions,
        every_s=60,
        max_runtime_s=300,
        description="Expires idle sessions on every running worker (per deployment's session_timeout_s).",
        series=(Series("expired", "Sessions expired"), Series("freed_bytes", "Memory freed", "bytes")),
    ),
    Job(
        "prune_job_runs",
        prune_job_runs,
        every_s=6 * 3600,
        misfire_grace_s=None,
        description="Deletes job runs older than JOB_RUN_RETENTION_DAYS.",
        series=(Series("deleted", "Runs deleted"),),
    ),
    Job(
        "prune_metrics",
        "controlplane.monitoring.history:prune",
        every_s=3600,
        misfire_grace_s=None,
        description="Deletes one-minute metric rollups older than METRICS_RETENTION_DAYS.",
        series=(Series("deleted", "Rollups deleted"),),
    ),
    Job(
        "advance_rollouts",
        "controlplane.rollouts.machine:advance_all",
        every_s=5,
        max_runtime_s=600,
        description="Moves active rollouts on: starts steps, evaluates gates at the end of each bake time, "
        "promotes or rolls back.",
        series=(Series("active", "Active rollouts"),),
    ),
    Job(
        "drift_checks",
        "controlplane.drift.checks:run_scheduled_checks",
        every_s=settings.DRIFT_CHECK_INTERVAL_S,
        max_runtime_s=1800,
        description="Quality (golden set), latency change points and output distribution of every running "
        "deployment against its baseline.",
        series=(Series("drifted", "Checks that found drift"), Series("ok", "Checks without drift")),
    ),
    Job(
        "evaluate_alert_rules",
        "controlplane.alerts:evaluate_alert_rules",
        every_s=15,
        max_runtime_s=120,
        description="Evaluates latency, error-rate and worker-restart rules; fires and resolves alerts.",
    ),
    Job(
        "deliver_notifications",
        "controlplane.alerts:deliver_pending_notifications",
        every_s=5,
        max_runtime_s=300,
        description="Sends pending alert e-mails, retrying temporary failures with backoff.",
        series=(Series("sent", "E-mails sent"), Series("failed", "Permanent failures")),
    ),
)

JOBS: dict[str, Job] = {job.name: job for job in REGISTRY}
if len(JOBS) != len(REGISTRY):
    raise ValueError("two jobs in REGISTRY share a name")


def get_job(name: str) -> Job:
    """The job called ``name``; ``LookupError`` when there is none."""
    try:
        return JOBS[name]
    except KeyError:
        raise LookupError(f"there is no job called {name!r}") from None
