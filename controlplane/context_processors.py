"""Template context for every page: the scheduler's health, for the banner that says when jobs stopped running."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from controlplane.jobs.heartbeat import scheduler_health


def scheduler(request) -> dict:
    """Lazy: the one primary-key read happens only when a page shows the banner (signed-in pages do)."""
    return {"scheduler_health": SimpleLazyObject(scheduler_health)}
