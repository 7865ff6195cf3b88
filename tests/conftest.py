"""Shared fixtures. Services beyond the embedded defaults (PostgreSQL, Redis) are used when their URLs are set."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    redis_url = os.environ.get("REDIS_URL")
    for item in items:
        if "redis" in item.keywords and not redis_url:
            item.add_marker(pytest.mark.skip(reason="REDIS_URL is not set (CI sets it; see .ci/run)"))
