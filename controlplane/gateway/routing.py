"""Which worker serves a request: the deployment named by ``model``, and during a rollout the stable or the canary
version. The canary gets its weight's share of traffic; a session is placed once (by a stable hash of its id) and
kept there, so a conversation stays on one version while the weight grows."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from controlplane.choices import DesiredState, RolloutStatus
from controlplane.models import Deployment, InferenceRecord, Rollout
from controlplane.services.serving import served_key

from .cachecalls import call_or
from .db import reconnecting
from .errors import GatewayError


@dataclass(frozen=True)
class Target:
    deployment_id: int
    deployment_name: str
    variant: str
    worker_url: str
    revision: int | None
    model_version_id: int
    cache_ttl_s: int
    cache_scope: str
    status: str
    status_detail: str


@dataclass(frozen=True)
class Route:
    stable: Target
    canary: Target | None = None
    weight: int = 0
    rollout_id: int | None = None
    session_timeout_s: int = 3600


WAIT_POLL_S = 0.5  # how often a waiting request looks for a worker again
_routes: dict[str, tuple[float, Route | None]] = {}
# Longer names (or names with NUL, which PostgreSQL refuses) cannot be deployments: 404 without a query.
MAX_NAME = 200


@reconnecting
def _load(name: str) -> Route | None:
    deployment = (
        Deployment.objects.select_related("current_revision")
        .filter(name=name, desired_state=DesiredState.RUNNING, current_revision__isnull=False)
        .first()
    )
    if deployment is None:
        return None
    revision = deployment.current_revision
    assert revision is not None  # filtered on current_revision__isnull=False
    served = deployment.applied_revision or revision.number  # until a new revision is applied, the old one serves
    stable = Target(
        deployment_id=deployment.pk,
        deployment_name=deployment.name,
        variant=InferenceRecord.STABLE,
        worker_url=deployment.worker_url,
        revision=served,
        model_version_id=revision.model_version_id,
        cache_ttl_s=int(revision.config.get("cache_ttl_s", 0)),
        cache_scope=f"r{served}",
        status=deployment.status,
        status_detail=deployment.status_detail,
    )
    rollout = (
        Rollout.objects.filter(deployment=deployment, status__in=(RolloutStatus.RUNNING, RolloutStatus.PAUSED))
        .exclude(canary_url="")
        .first()
    )
    if rollout is None or rollout.weight == 0:
        return Route(stable, session_timeout_s=int(revision.config.get("session_timeout_s", 3600)))
    canary = Target(
        deployment_id=deployment.pk,
        deployment_name=deployment.name,
        variant=InferenceRecord.CANARY,
        worker_url=rollout.canary_url,
        revision=None,
        model_version_id=rollout.target_model_version_id,
        cache_ttl_s=int(rollout.target_config.get("cache_ttl_s", 0)),
        cache_scope=f"c{rollout.pk}",
        status=deployment.status,
        status_detail="canary",
    )
    return Route(stable, canary, rollout.weight, rollout.pk, int(revision.config.get("session_timeout_s", 3600)))


async def _route(model: str, fresh: bool = False) -> Route | None:
    now = time.monotonic()
    hit = _routes.get(model)
    if hit is not None and hit[0] > now and not fresh:
        route = hit[1]
        served = None if route is None else await call_or(None, "get", served_key(route.stable.deployment_id))
        if route is None or served in (None, route.stable.revision):
            return route
    route = await sync_to_async(_load)(model)
    if len(_routes) > 10_000:  # unknown names are remembered too; keep a flood of them from growing this
        _routes.clear()
    _routes[model] = (now + settings.GATEWAY_ROUTE_CACHE_S, route)
    return route


def _bucket(session_id: str) -> int:
    return int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:4], "big") % 100


async def _choose(route: Route, session_id: str) -> Target:
    if route.canary is None:
        return route.stable
    if not session_id:
        return route.canary if random.random() * 100 < route.weight else route.stable
    key = f"gw:sticky:{route.rollout_id}:{session_id}"
    placed = await call_or(None, "get", key)
    if placed is None:  # a new session, or the cache is unavailable: placed by its hash alone
        placed = InferenceRecord.CANARY if _bucket(session_id) < route.weight else InferenceRecord.STABLE
        await call_or(None, "set", key, placed, timeout=route.session_timeout_s)
    return route.canary if placed == InferenceRecord.CANARY else route.stable


class NoWorker(GatewayError):
    """503: the deployment exists but no worker serves it now. The caller reads a plain message; the deployment's
    state goes to the request's record (``detail``)."""

    def __init__(self, model: str, target: Target):
        super().__init__(
            503,
            f"The model {model!r} has no worker serving right now. Retry shortly.",
            code="worker_unavailable",
            retry_after=settings.GATEWAY_RETRY_AFTER_S,
            detail=f"no worker serving ({target.status}: {target.status_detail or 'starting'})",
        )
        self.target = target


async def resolve(model: str, session_id: str | None = None, *, fresh: bool = False) -> Target:
    """The target for ``model``; 404 for an unknown model, 503 (``NoWorker``) while no worker serves it."""
    route = None if "\x00" in model or len(model) > MAX_NAME else await _route(model, fresh)
    if route is None:
        raise GatewayError(
            404,
            f"The model {model[:MAX_NAME]!r} does not exist or is not deployed; GET /v1/models lists them.",
            param="model",
            code="model_not_found",
        )
    target = await _choose(route, session_id or "")
    if not target.worker_url:
        raise NoWorker(model, target)
    return target


async def resolve_waiting(model: str, session_id: str | None = None, *, not_url: str = "") -> Target:
    """``resolve``, but while the deployment has no worker (a worker restarting after a crash) or only the one at
    ``not_url`` (which could not be reached), wait up to GATEWAY_WORKER_WAIT_S for a new one: a request that
    arrives during a restart is served late instead of refused. Then ``NoWorker`` as ``resolve`` raises it."""
    deadline = time.monotonic() + settings.GATEWAY_WORKER_WAIT_S
    fresh = bool(not_url)
    while True:
        try:
            target = await resolve(model, session_id, fresh=fresh)
        except NoWorker:
            if time.monotonic() >= deadline:
                raise
        else:
            if target.worker_url != not_url or time.monotonic() >= deadline:
                return target
        await asyncio.sleep(WAIT_POLL_S)
        fresh = True


def forget_routes() -> None:
    _routes.clear()


@reconnecting
def _list_models() -> list[dict]:
    queryset = Deployment.objects.filter(desired_state=DesiredState.RUNNING, current_revision__isnull=False)
    return [
        {"id": d.name, "object": "model", "created": int(d.created_at.timestamp()), "owned_by": "controlplane"}
        for d in queryset.order_by("name")
    ]


async def list_models() -> list[dict]:
    return await sync_to_async(_list_models)()
