"""The response cache for deterministic requests (temperature 0, or a fixed seed), in Django's cache (Redis when
REDIS_URL is set). Keys include the deployment's served revision, so a config or model change never serves an old
answer. Hits, misses and bytes are counted per deployment in the same cache, so all processes add to one count.
While the cache is unavailable, lookups miss and nothing is stored or counted."""

from __future__ import annotations

import hashlib
import json

from controlplane.services.serving import cache_stat_key

from .cachecalls import CacheUnavailable, call, call_or
from .routing import Target

# Fields that do not change the answer.
IGNORED_FIELDS = {"stream", "stream_options", "user", "session_id"}


def is_deterministic(body: dict) -> bool:
    temperature = body.get("temperature", 1.0)
    return temperature == 0 or body.get("seed") is not None


def cache_key(target: Target, endpoint: str, body: dict) -> str:
    canonical = json.dumps(
        {k: v for k, v in body.items() if k not in IGNORED_FIELDS}, sort_keys=True, separators=(",", ":"), default=str
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    stream = "s" if body.get("stream") else "j"
    return f"gw:r:{target.deployment_id}:{target.cache_scope}:{target.model_version_id}:{endpoint}:{stream}:{digest}"


async def count(deployment_id: int, name: str, amount: int = 1) -> None:
    key = cache_stat_key(deployment_id, name)
    try:
        if not await call("add", key, amount, timeout=None):
            try:
                await call("incr", key, amount)
            except ValueError:  # evicted between add and incr
                await call("set", key, amount, timeout=None)
    except CacheUnavailable:
        pass


async def get(key: str) -> bytes | None:
    return await call_or(None, "get", key)


async def put(key: str, payload: bytes, ttl_s: int) -> None:
    await call_or(None, "set", key, payload, timeout=ttl_s)
