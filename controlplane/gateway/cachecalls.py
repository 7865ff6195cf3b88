"""Django's cache from the event loop without thread hops where none are needed.

The local-memory cache is an in-process dict behind a lock: calling it directly is faster than any hop. Other
backends (Redis) do network I/O, so their calls run in the default thread pool (not Django's single thread for
thread-sensitive work, which every concurrent request would queue for); redis-py's client is thread-safe."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache


async def call(method: str, *args, **kwargs):
    backend = caches["default"]
    function = getattr(backend, method)
    if isinstance(backend, LocMemCache):
        return function(*args, **kwargs)
    return await sync_to_async(function, thread_sensitive=False)(*args, **kwargs)
