"""Operator actions on workers and what they serve: restart, start/stop, live state, sessions, usage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from controlplane.choices import DesiredState
from controlplane.models import Deployment, InferenceRecord
from controlplane.services import audit
from controlplane.services.deployments import deployment_changed, update_deployment
from controlplane.services.errors import Conflict, InvalidInput, flatten_errors
from controlplane.services.fit import check_fit, estimate_memory
from controlplane.workers.client import WorkerClient, WorkerError

__all__ = [
    "RestartPlan",
    "end_session",
    "list_sessions",
    "live_state",
    "request_restart",
    "restart_plan",
    "set_running",
    "usage_summary",
]


@dataclass(frozen=True)
class RestartPlan:
    """How a worker will be restarted: ``rolling`` (a new worker beside the old, no request dropped) or, when a
    second copy does not fit, ``stop_start`` (requests fail while the model loads)."""

    mode: str
    detail: str

    @property
    def rolling(self) -> bool:
        return self.mode == ROLLING

    def as_dict(self) -> dict:
        return {"mode": self.mode, "detail": self.detail}


ROLLING, STOP_START = "rolling", "stop_start"


def restart_plan(deployment: Deployment) -> RestartPlan:
    """Does a second copy of the deployment fit beside the running one (the fit check, headroom kept)?"""
    current = deployment.current_revision
    assert current is not None  # deployments are created with their first revision
    gpus = list(deployment.gpus.all())
    running = estimate_memory(current.model_version, current.config, on_gpu=bool(gpus))
    try:
        check_fit(
            current.model_version,
            current.config,
            deployment.node,
            gpus,
            exclude=deployment,
            extra_claims=running.total_bytes,
        )
    except InvalidInput as exc:
        reason = flatten_errors(exc.errors)[0][1]
        return RestartPlan(
            STOP_START,
            "A second copy does not fit beside the running worker, so it is stopped and started again: requests "
            f"fail until the model is loaded. {reason}",
        )
    return RestartPlan(
        ROLLING,
        "A new worker starts beside the running one; traffic switches to it once it is ready, and the old one "
        "finishes its requests before it stops. No request is dropped.",
    )


def request_restart(actor: audit.Actor, deployment: Deployment) -> RestartPlan:
    """Ask the supervisor to restart the worker: rolling when a second copy fits, else stop and start."""
    if deployment.desired_state != DesiredState.RUNNING:
        raise Conflict(f"{deployment.name} is stopped; start it instead of restarting it")
    plan = restart_plan(deployment)
    with transaction.atomic():
        now = timezone.now()
        Deployment.objects.filter(pk=deployment.pk).update(restart_requested_at=now)
        deployment.restart_requested_at = now
        audit.record(actor, "deployment.restart", deployment, message=f"worker restart requested ({plan.mode})")
        transaction.on_commit(lambda: deployment_changed.send(sender=Deployment, deployment=deployment, revision=None))
    return plan


def set_running(actor: audit.Actor, deployment: Deployment, running: bool) -> Deployment:
    state = DesiredState.RUNNING if running else DesiredState.STOPPED
    return update_deployment(
        actor,
        deployment,
        desired_state=state,
        comment="started by an operator" if running else "stopped by an operator",
    )


def _client(deployment: Deployment) -> WorkerClient:
    if not deployment.worker_url:
        raise Conflict(f"{deployment.name} has no running worker ({deployment.get_status_display()})")
    return WorkerClient.for_deployment(deployment.pk, deployment.worker_url)


def live_state(deployment: Deployment) -> dict:
    """What the worker itself reports (its live config and stats), or why it cannot."""
    state: dict[str, Any] = {
        "status": deployment.status,
        "detail": deployment.status_detail,
        "url": deployment.worker_url,
        "pid": deployment.worker_pid,
        "started_at": deployment.worker_started_at,
        "applied_revision": deployment.applied_revision,
        "current_revision": deployment.current_revision.number if deployment.current_revision else None,
    }
    if not deployment.worker_url:
        return {**state, "reachable": False}
    client = WorkerClient.for_deployment(deployment.pk, deployment.worker_url)
    try:
        state.update(reachable=True, config=client.get_config(), stats=client.stats())
    except WorkerError as exc:
        state.update(reachable=False, error=exc.message)
    finally:
        client.close()
    return state


def list_sessions(deployments) -> tuple[list[dict], list[dict]]:
    """Live sessions of every running worker, and the workers that could not be asked."""
    sessions, errors = [], []
    for deployment in deployments:
        if not deployment.worker_url:
            continue
        client = WorkerClient.for_deployment(deployment.pk, deployment.worker_url)
        try:
            for row in client.sessions():
                sessions.append({**row, "deployment": deployment.pk, "deployment_name": deployment.name})
        except WorkerError as exc:
            errors.append({"deployment": deployment.pk, "deployment_name": deployment.name, "error": exc.message})
        finally:
            client.close()
    return sessions, errors


def end_session(actor: audit.Actor, deployment: Deployment, session_id: str) -> dict:
    client = _client(deployment)
    try:
        result = client.delete_session(session_id)
    except WorkerError as exc:
        if exc.status == 404:
            raise InvalidInput.field("session", f"{deployment.name} has no session {session_id!r}") from None
        raise Conflict(f"the worker of {deployment.name} refused: {exc.message}") from None
    finally:
        client.close()
    audit.record(
        actor,
        "session.end",
        deployment,
        object_type="session",
        object_id=f"{deployment.pk}:{session_id}",
        object_repr=f"{deployment.name}/{session_id}",
        after=result,
    )
    return result or {}


def usage_summary(*, since=None, group_by: str = "token") -> list[dict]:
    """Requests, tokens, errors and cache hits per token or per deployment since ``since`` (default: 24 hours)."""
    fields = {
        "token": ("token_id", "token__name", "token__user__username"),
        "deployment": ("deployment_id", "deployment__name"),
    }
    if group_by not in fields:
        raise InvalidInput.field("group_by", "must be token or deployment")
    since = since or timezone.now() - timedelta(days=1)
    rows = (
        InferenceRecord.objects.filter(at__gte=since)
        .values(*fields[group_by])
        .annotate(
            requests=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            errors=Count("id", filter=Q(status_code__gte=400)),
            cached=Count("id", filter=Q(cached=True)),
        )
        .order_by("-requests")
    )
    return list(rows)
