"""Which worker serves a request: the deployment named by ``model``, and (during a rollout) the stable or canary
version, chosen by weight and kept per session so a conversation stays on one version."""

from __future__ import annotations

import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from controlplane.choices import DesiredState
from controlplane.models import Deployment

from .errors import GatewayError


@dataclass(frozen=True)
class Target:
    deployment_id: int
    deployment_name: str
    variant: str
    worker_url: str
    revision: int
    model_version_id: int
    cache_ttl_s: int
    status: str
    status_detail: str


_routes: dict[str, tuple[float, Target | None]] = {}


def _load(name: str) -> Target | None:
    deployment = (
        Deployment.objects.select_related("current_revision")
        .filter(name=name, desired_state=DesiredState.RUNNING, current_revision__isnull=False)
        .first()
    )
    if deployment is None:
        return None
    revision = deployment.current_revision
    # The revision the worker actually serves is the one to cache under; until it is applied, the old one.
    served = deployment.applied_revision or revision.number
    return Target(
        deployment_id=deployment.pk,
        deployment_name=deployment.name,
        variant="stable",
        worker_url=deployment.worker_url,
        revision=served,
        model_version_id=revision.model_version_id,
        cache_ttl_s=int(revision.config.get("cache_ttl_s", 0)),
        status=deployment.status,
        status_detail=deployment.status_detail,
    )


async def resolve(model: str, session_id: str | None = None) -> Target:
    """The target for ``model``; 404 for an unknown model, 503 while its worker is not serving."""
    now = time.monotonic()
    hit = _routes.get(model)
    if hit is not None and hit[0] > now:
        target = hit[1]
    else:
        target = await sync_to_async(_load)(model)
        _routes[model] = (now + settings.GATEWAY_ROUTE_CACHE_S, target)
    if target is None:
        raise GatewayError(
            404,
            f"The model {model!r} does not exist or is not deployed; GET /v1/models lists them.",
            param="model",
            code="model_not_found",
        )
    if not target.worker_url:
        raise GatewayError(
            503,
            f"The model {model!r} has no worker serving right now ({target.status}: "
            f"{target.status_detail or 'starting'}). Retry shortly.",
            code="worker_unavailable",
            retry_after=settings.GATEWAY_RETRY_AFTER_S,
        )
    return target


def forget_routes() -> None:
    _routes.clear()


def _list_models() -> list[dict]:
    queryset = Deployment.objects.filter(desired_state=DesiredState.RUNNING, current_revision__isnull=False)
    return [
        {"id": d.name, "object": "model", "created": int(d.created_at.timestamp()), "owned_by": "controlplane"}
        for d in queryset.order_by("name")
    ]


async def list_models() -> list[dict]:
    return await sync_to_async(_list_models)()
