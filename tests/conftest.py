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
