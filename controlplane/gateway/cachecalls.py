"""Django's cache from the event loop without thread hops where none are needed, and without failing when it is gone.

The local-memory cache is an in-process dict behind a lock: calling it directly is faster than any hop. Other
backends (Redis) do network I/O, so their calls run in the default thread pool (not Django's single thread for
thread-sensitive work, which every concurrent request would queue for); redis-py's client is thread-safe.

When the shared cache cannot be reached (Redis stopped, a network split), every call raises ``CacheUnavailable``
and, for ``PAUSE_S`` after a failure, calls fail at once without trying again, so that requests do not each wait for
a connection attempt. Callers degrade: the response cache is skipped, routes come from the database and this
process's memory, rate limits are counted per process (see ``limits``)."""

from __future__ import annotations

import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache

logger = logging.getLogger(__name__)

# After a failed call, calls fail at once for this long before the cache is tried again.
PAUSE_S = 2.0
_down_until = 0.0


class CacheUnavailable(Exception):
    """The shared cache did not answer; the caller carries on without it."""


async def call(method: str, *args: Any, **kwargs: Any) -> Any:
    """``caches["default"].<method>(*args, **kwargs)``; ``ValueError`` (``incr`` of a missing key) passes through,
    any other failure of the backend raises ``CacheUnavailable``."""
    global _down_until
    backend = caches["default"]
    function = getattr(backend, method)
    if isinstance(backend, LocMemCache):
        return function(*args, **kwargs)
    if time.monotonic() < _down_until:
        raise CacheUnavailable("the cache is unavailable")
    try:
        return await sync_to_async(function, thread_sensitive=False)(*args, **kwargs)
    except ValueError:
        raise
    except Exception as exc:  # redis-py's ConnectionError, TimeoutError, OSError…: all mean "not now"
        if time.monotonic() >= _down_until:
            logger.warning("the cache is unavailable (%r); the gateway carries on without it", exc)
        _down_until = time.monotonic() + PAUSE_S
        raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc


async def call_or(default: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """Like ``call``, but ``default`` when the cache is unavailable."""
    try:
        return await call(method, *args, **kwargs)
    except CacheUnavailable:
        return default


def forget_outage() -> None:
    """Try the cache again on the next call (tests)."""
    global _down_until
    _down_until = 0.0
