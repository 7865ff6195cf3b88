"""The scheduler lock: a row with an owner and a lease expiry, taken and renewed with one conditional UPDATE.

Whoever's UPDATE matches the row (free, expired, or already theirs) leads until ``expires_at``; everyone else's
matches nothing. PostgreSQL re-checks the WHERE clause on the row version a concurrent winner committed, and SQLite
serialises writers, so two schedulers never both see ``1`` — the lock needs nothing but the database. Times come
from the callers' clocks, so the hosts' clocks must agree to well within a lease (NTP does).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, DateTimeField, F, Q, Value, When

from controlplane.models import SchedulerLease

__all__ = ["LOCK", "Holder", "acquire", "holder", "release"]

LOCK = "scheduler"


@dataclass(frozen=True)
class Holder:
    owner: str
    acquired_at: datetime | None
    expires_at: datetime | None


def acquire(owner: str, now: datetime, lease_s: float, *, name: str = LOCK) -> bool:
    """Take the lock when it is free or its lease has expired, or renew it when ``owner`` holds it; True when
    ``owner`` holds it for ``lease_s`` from ``now``."""
    for _ in range(2):
        updated = (
            SchedulerLease.objects.filter(name=name)
            .filter(Q(owner=owner) | Q(owner="") | Q(expires_at__isnull=True) | Q(expires_at__lte=now))
            .update(
                owner=owner,
                renewed_at=now,
                expires_at=now + timedelta(seconds=lease_s),
                # SET expressions read the row as it was: a renewal keeps the time it was first taken.
                acquired_at=Case(When(owner=owner, then=F("acquired_at")), default=Value(now, DateTimeField())),
            )
        )
        if updated:
            return True
        if SchedulerLease.objects.filter(name=name).exists():
            return False
        SchedulerLease.objects.bulk_create([SchedulerLease(name=name)], ignore_conflicts=True)
    return False


def release(owner: str, now: datetime, *, name: str = LOCK) -> bool:
    """Give the lock up (on a clean stop) so a standby takes over at its next try instead of after the lease."""
    return SchedulerLease.objects.filter(name=name, owner=owner).update(owner="", expires_at=now) == 1


def holder(now: datetime, *, name: str = LOCK) -> Holder | None:
    """Who leads at ``now``, or None when nobody does."""
    row = SchedulerLease.objects.filter(name=name, expires_at__gt=now).exclude(owner="").first()
    return Holder(row.owner, row.acquired_at, row.expires_at) if row else None
