"""Rate limits per token and per user: fixed one-minute windows counted in Django's cache (shared across processes on
Redis). A user's limit covers all of their tokens together, so minting more tokens never buys more requests.

While the shared cache is unavailable the windows are counted in this process's memory instead: each process then
enforces the limit on its own share of the traffic, which is looser than the shared count but never unlimited."""

from __future__ import annotations

import time

from .auth import Caller
from .cachecalls import CacheUnavailable, call
from .errors import GatewayError

_local: dict[str, int] = {}


def _count_locally(key: str, window: int) -> int:
    if len(_local) > 10_000:
        _local.clear()
    for stale in [k for k in _local if not k.endswith(f":{window}")]:
        del _local[stale]
    _local[key] = _local.get(key, 0) + 1
    return _local[key]


async def _count(key: str, window: int) -> int:
    """This request's number in ``key``'s window."""
    try:
        if await call("add", key, 1, timeout=120):
            return 1
        try:
            return int(await call("incr", key))
        except ValueError:
            await call("set", key, 1, timeout=120)
            return 1
    except CacheUnavailable:
        return _count_locally(key, window)


async def _check(key: str, limit: int, whose: str, now: float) -> None:
    window = int(now // 60)
    if await _count(f"{key}:{window}", window) > limit:
        raise GatewayError(
            429,
            f"Rate limit of {limit} requests per minute reached for this {whose}.",
            code="rate_limit_exceeded",
            retry_after=max(1, int((window + 1) * 60 - now)),
        )


async def check_rate_limit(caller: Caller, now: float | None = None) -> None:
    """429 when the token's or its user's requests this minute are over their limit."""
    now = time.time() if now is None else now
    if caller.rate_limit_per_minute:
        await _check(f"gw:rl:{caller.token_id}", caller.rate_limit_per_minute, "token", now)
    if caller.user_rate_limit_per_minute:
        await _check(f"gw:rl:u:{caller.user_id}", caller.user_rate_limit_per_minute, "user", now)


def forget_counts() -> None:
    """Drop this process's fallback counts (tests)."""
    _local.clear()
