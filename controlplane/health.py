"""Health checks: ``/healthz`` says the process is alive; ``/readyz`` says what it depends on answers."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from controlplane.choices import DeploymentStatus, DesiredState, Role
from controlplane.models import Deployment
from controlplane.services import redis_check

logger = logging.getLogger(__name__)

# Extra readiness checks registered by other parts (the supervisor adds the worker): name → callable that raises.
READINESS_CHECKS: dict[str, Callable[[], object]] = {}


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")

    async def roundtrip():
        channel = await layer.new_channel("readyz.")
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "readyz.ping", "token": token})
        message = await asyncio.wait_for(layer.receive(channel), timeout=2)
        if message.get("token") != token:
            raise RuntimeError("the channel layer returned another message")

    async_to_sync(roundtrip)()


def check_redis() -> dict:
    """Redis answers, when REDIS_URL is set (the channel layer, the cache and the gateway's shared state)."""
    url = str(settings.REDIS_URL)
    redis_check.ping(url)
    return {"server": redis_check.describe(url)}


def check_workers() -> dict:
    """Every deployment that should run has a worker answering (as the supervisor last saw it)."""
    wanted = Deployment.objects.filter(desired_state=DesiredState.RUNNING)
    down = [
        f"{d.name} ({d.status}: {d.status_detail or 'no worker'})"
        for d in wanted
        if d.status != DeploymentStatus.RUNNING or not d.worker_url
    ]
    if down:
        raise RuntimeError("not serving: " + "; ".join(down))
    return {"serving": len(wanted)}


def run_checks() -> dict[str, dict]:
    checks = {
        "database": check_database,
        **({"redis": check_redis} if settings.REDIS_URL else {}),
        "channel_layer": check_channel_layer,
        "workers": check_workers,
        **READINESS_CHECKS,
    }
    results: dict[str, dict] = {}
    for name, check in checks.items():
        started = time.perf_counter()
        try:
            detail = check()
            results[name] = {"ok": True}
            if isinstance(detail, dict):
                results[name].update(detail)
        except Exception as exc:
            logger.warning("readiness check %s failed: %s", name, exc)
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return results


def sees_detail(user) -> bool:
    """Operators, admins and staff see what each check found (deployment names, errors, the scheduler's host and
    pid); anyone else, a load balancer included, sees only whether each check passed."""
    return bool(user.is_authenticated and (user.is_staff or user.has_role(Role.OPERATOR)))


@require_GET
def readyz(request):
    results = run_checks()
    failed = [name for name, result in results.items() if not result["ok"]]
    if not sees_detail(request.user):
        results = {name: {"ok": result["ok"]} for name, result in results.items()}
    body = {"status": "ok" if not failed else "unavailable", "failed": failed, "checks": results}
    return JsonResponse(body, status=200 if not failed else 503)
