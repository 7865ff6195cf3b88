"""Is the scheduler alive? Judged from the lock row alone (one primary-key read, cheap enough for every page).

Two signs of life: the scheduler renews its lock every few seconds (``renewed_at``, kept when it stops cleanly), and
the heartbeat job stamps ``jobs_heartbeat_at`` every minute, which proves that jobs really run. When either is older
than SCHEDULER_STALE_AFTER_S, jobs have stopped: the dashboard shows a banner, /readyz reports it, and a
``scheduler_heartbeat`` alert fires (cleared when the scheduler is back).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from controlplane.alerts import service as alerts
from controlplane.choices import SchedulerState
from controlplane.jobs.lease import LOCK
from controlplane.models import SchedulerLease

logger = logging.getLogger(__name__)

__all__ = ["HeartbeatWatcher", "SchedulerHealth", "readiness", "scheduler_health"]


@dataclass(frozen=True)
class SchedulerHealth:
    state: str
    owner: str = ""
    loop_age_s: float | None = None
    jobs_age_s: float | None = None
    threshold_s: float = 0.0
    last_beat_at: datetime | None = None  # the older of the two signs of life

    @property
    def stale(self) -> bool:
        return self.state != SchedulerState.RUNNING

    @property
    def label(self) -> str:
        return str(SchedulerState(self.state).label)

    @property
    def message(self) -> str:
        if self.state == SchedulerState.NEVER_RAN:
            return "No scheduler has run yet: scheduled jobs (session cleanup, checks, alerts) are not running."
        if self.state == SchedulerState.STOPPED:
            return (
                f"The scheduler has not renewed its lock for {self.loop_age_s:.0f} s: scheduled jobs are not running."
            )
        if self.state == SchedulerState.STUCK:
            return f"The scheduler is alive but no job has run for {self.jobs_age_s:.0f} s: its jobs may be stuck."
        return f"Scheduler {self.owner} runs the jobs."

    def as_dict(self) -> dict:
        return {
            "state": self.state,
            "stale": self.stale,
            "owner": self.owner,
            "loop_age_s": self.loop_age_s,
            "jobs_age_s": self.jobs_age_s,
            "threshold_s": self.threshold_s,
            "last_beat_at": self.last_beat_at.isoformat() if self.last_beat_at else None,
            "message": self.message,
        }


def scheduler_health(now: datetime | None = None) -> SchedulerHealth:
    now = now or timezone.now()
    threshold = settings.SCHEDULER_STALE_AFTER_S
    row = SchedulerLease.objects.filter(name=LOCK).first()
    if row is None or row.renewed_at is None:
        return SchedulerHealth(SchedulerState.NEVER_RAN, threshold_s=threshold)
    # A new leader has the threshold from taking the lock to prove its jobs run.
    jobs_beat = max((m for m in (row.jobs_heartbeat_at, row.acquired_at) if m is not None), default=row.renewed_at)
    loop_age = round((now - row.renewed_at).total_seconds(), 3)
    jobs_age = round((now - jobs_beat).total_seconds(), 3)
    if loop_age > threshold:
        state = SchedulerState.STOPPED
    elif jobs_age > threshold:
        state = SchedulerState.STUCK
    else:
        state = SchedulerState.RUNNING
    return SchedulerHealth(state, row.owner, loop_age, jobs_age, threshold, min(row.renewed_at, jobs_beat))


def readiness() -> dict:
    """For /readyz: reported, never failed. Readiness decides whether this process gets traffic, and taking the
    dashboard and the gateway out of service because background jobs stopped would turn a warning into an outage."""
    return scheduler_health().as_dict()


class HeartbeatWatcher:
    """Raises and clears the ``scheduler_heartbeat`` alert: at every check it hands the alerts the scheduler's last
    sign of life (their rules decide, deduplicate and deliver the e-mails themselves, since the scheduler that
    normally delivers them is the one that stopped). For its first SCHEDULER_STALE_AFTER_S it does not call a stale
    scheduler stale: a scheduler starting beside it gets that long. A failing alert service is logged."""

    def __init__(self, started_at: datetime | None = None) -> None:
        self.started_at = started_at or timezone.now()

    def check(self, now: datetime | None = None) -> SchedulerHealth:
        now = now or timezone.now()
        health = scheduler_health(now)
        settling = (now - self.started_at).total_seconds() < health.threshold_s
        if health.stale and settling:
            return health
        try:
            alerts.check_scheduler_heartbeat(health.last_beat_at, now=now)
        except Exception:
            logger.exception("the alerts' scheduler heartbeat check failed")
        return health
