"""Shared fixtures. Services beyond the embedded defaults (PostgreSQL, Redis) are used when their URLs are set."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    redis_url = os.environ.get("REDIS_URL")
    for item in items:
        if "redis" in item.keywords and not redis_url:
            item.add_marker(pytest.mark.skip(reason="REDIS_URL is not set (CI sets it; see .ci/run)"))


@pytest.fixture(autouse=True, scope="session")
def _close_connections_of_the_sync_thread(django_db_setup):
    """Async tests reach the database from asgiref's one thread for thread-sensitive code (``sync_to_async``,
    ``database_sync_to_async``); close that thread's connections before the test database is dropped, or
    PostgreSQL refuses to drop a database someone is still connected to."""
    yield
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    asyncio.run(sync_to_async(connections.close_all)())


@pytest.fixture(autouse=True, scope="session")
def _own_redis_keys():
    """With REDIS_URL set, the cache lives in Redis, which outlives the test database: a key written by an earlier
    run (``gw:served:<deployment id>``, kept without expiry) would meet a new deployment with the same id. Each run
    gets its own key prefix, and removes its keys at the end."""
    from django.conf import settings

    redis_url = getattr(settings, "REDIS_URL", None)
    if not redis_url:
        yield
        return
    import uuid

    import redis
    from django.test import override_settings

    prefix = f"test-{uuid.uuid4().hex[:12]}"
    caches = {name: {**config, "KEY_PREFIX": prefix} for name, config in settings.CACHES.items()}
    with override_settings(CACHES=caches):
        yield
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
