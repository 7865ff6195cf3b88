"""What the supervisor and the canaries write about workers: events, and which worker a deployment is served by."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.db import transaction

from controlplane.choices import DeploymentStatus
from controlplane.models import Deployment, WorkerEvent
from controlplane.services.serving import publish_served_revision
from controlplane.workers.pool import Worker

logger = logging.getLogger(__name__)

__all__ = ["event", "mark", "serving"]


def event(deployment: Deployment, kind: str, message: str, **fields: Any) -> WorkerEvent:
    logger.info("%s: %s", deployment.name, message)
    return WorkerEvent.objects.create(deployment=deployment, kind=kind, message=message[:500], **fields)


def mark(deployment: Deployment, status: str, detail: str, *, keep_url: bool = False) -> None:
    """Set the deployment's status; unless ``keep_url`` (an old worker still serves), nothing is routed to it."""
    changes: dict[str, Any] = {"status": status, "status_detail": detail[:500]}
    if not keep_url:
        changes["worker_url"] = ""
    Deployment.objects.filter(pk=deployment.pk).update(**changes)


def serving(deployment: Deployment, worker: Worker, revision: int) -> None:
    """``worker`` serves ``deployment`` at ``revision`` from now on: the gateway routes to it."""
    worker.revision = revision
    with transaction.atomic():
        Deployment.objects.filter(pk=deployment.pk).update(
            status=DeploymentStatus.RUNNING,
            status_detail=f"serving revision {revision} on {worker.url} (pid {worker.pid})",
            worker_url=worker.url,
            worker_pid=worker.pid,
            worker_started_at=datetime.fromtimestamp(worker.started_wall, tz=UTC),
            applied_revision=revision,
        )
    publish_served_revision(deployment.pk, revision)
