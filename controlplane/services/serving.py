"""What the gateway shares with the rest of the control plane through Django's cache (Redis in scale-out): the
revision each deployment's worker serves now, and the response cache's counters.

The supervisor publishes a served revision whenever a worker starts serving one; every gateway process checks it on
its next request, so no answer cached for an old revision is served after a switch. The dashboard and the API read
the cache counters that every gateway process adds to.
"""

from __future__ import annotations

from django.core.cache import cache

__all__ = ["CACHE_STAT_KEYS", "cache_stat_key", "cache_stats", "publish_served_revision", "served_key"]

CACHE_STAT_KEYS = ("hits", "misses", "bytes_served", "bytes_stored")


def served_key(deployment_id: int) -> str:
    return f"gw:served:{deployment_id}"


def publish_served_revision(deployment_id: int, revision: int | None) -> None:
    """Record that ``deployment_id`` now serves ``revision`` (None: nothing)."""
    cache.set(served_key(deployment_id), revision, timeout=None)


def cache_stat_key(deployment_id: int, name: str) -> str:
    return f"gw:stats:{deployment_id}:{name}"


def cache_stats(deployment_id: int) -> dict[str, int | float | None]:
    """Hits, misses, bytes served and stored of the deployment's response cache, and the hit ratio."""
    values = cache.get_many([cache_stat_key(deployment_id, name) for name in CACHE_STAT_KEYS])
    result: dict[str, int | float | None] = {
        name: int(values.get(cache_stat_key(deployment_id, name), 0)) for name in CACHE_STAT_KEYS
    }
    hits, misses = int(result["hits"] or 0), int(result["misses"] or 0)
    result["hit_ratio"] = round(hits / (hits + misses), 4) if hits + misses else None
    return result
