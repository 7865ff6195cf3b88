"""Per-token rate limits: a fixed one-minute window counted in Django's cache (shared across processes on Redis)."""

from __future__ import annotations

import time

from .auth import Caller
from .cachecalls import call
from .errors import GatewayError


async def check_rate_limit(caller: Caller, now: float | None = None) -> None:
    limit = caller.rate_limit_per_minute
    if not limit:
        return
    now = time.time() if now is None else now
    window = int(now // 60)
    key = f"gw:rl:{caller.token_id}:{window}"
    if await call("add", key, 1, timeout=120):
        used = 1
    else:
        try:
            used = await call("incr", key)
        except ValueError:
            await call("set", key, 1, timeout=120)
            used = 1
    if used > limit:
        retry_after = max(1, int((window + 1) * 60 - now))
        raise GatewayError(
            429,
            f"Rate limit of {limit} requests per minute reached for this token.",
            code="rate_limit_exceeded",
            retry_after=retry_after,
        )
