"""The jobs written in the scheduler's own package: the heartbeat, pruning old job runs, expiring idle sessions.
Each is a plain function without arguments that returns a JSON-ready dict, registered in ``registry.JOBS``."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from controlplane.choices import WorkerReply
from controlplane.jobs.lease import LOCK
from controlplane.models import Deployment, JobRun, JobRunRequest, JobState, SchedulerLease
from controlplane.workers.client import WorkerClient, WorkerError, WorkerUnavailable

__all__ = ["expire_sessions", "heartbeat", "prune_job_runs", "prune_runs"]


def heartbeat() -> dict:
    """Prove that jobs run: stamp the lock row while a scheduler holds it. Run inline without a leading scheduler
    (from the API, say) it stamps nothing, so it cannot hide a dead scheduler."""
    now = timezone.now()
    stamped = SchedulerLease.objects.filter(name=LOCK, expires_at__gt=now).exclude(owner="")
    return {"recorded": stamped.update(jobs_heartbeat_at=now) == 1}


def prune_job_runs() -> dict:
    """Delete job runs older than JOB_RUN_RETENTION_DAYS (each job's last and running run stay)."""
    return prune_runs(timezone.now(), settings.JOB_RUN_RETENTION_DAYS)


def prune_runs(now: datetime, keep_days: int, *, batch: int = 5000) -> dict:
    """Delete runs (and served run-now requests) older than ``keep_days``, in batches; every job's last and running
    run stay so that its page and its schedule keep their anchor."""
    cutoff = now - timedelta(days=keep_days)
    keep: set[int] = set()
    for last_id, running_id in JobState.objects.values_list("last_run_id", "running_run_id"):
        keep.update(pk for pk in (last_id, running_id) if pk)
    old = JobRun.objects.filter(started_at__lt=cutoff).exclude(pk__in=keep)
    deleted = 0
    while ids := list(old.values_list("pk", flat=True)[:batch]):
        deleted += JobRun.objects.filter(pk__in=ids).delete()[0]
    requests = JobRunRequest.objects.filter(requested_at__lt=cutoff, claimed_at__isnull=False).delete()[0]
    return {"deleted": deleted, "requests_deleted": requests, "cutoff": cutoff.isoformat()}


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
