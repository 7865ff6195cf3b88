"""Is the Redis at REDIS_URL answering? One ping with short timeouts, for ``/readyz`` and the Redis watch."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis

__all__ = ["describe", "ping"]


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or parts.path or "?"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def ping(url: str, timeout_s: float = 2.0) -> None:
    """Raise ``RuntimeError`` naming the server when it does not answer within ``timeout_s``."""
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeError(f"Redis at {describe(url)} does not answer: {exc}") from exc
    finally:
        client.close()
