"""The scheduler: runs the job registry (``jobs.JOBS``) while it holds the lock, stands by while another one does.

It is an APScheduler 3 ``BackgroundScheduler`` (a thread pool) driven by a loop of steps (``runtime.ServiceThread``).
Background, not asyncio: every job is synchronous ORM and HTTP code, so an asyncio scheduler would only hand each
run to a thread anyway, and this way the same object runs inside ``serve`` and in ``manage.py runscheduler``.

Each step (about once a second):
- every SCHEDULER_RENEW_S, take or renew the lock (``jobs/lease.py``); on winning it, free the jobs that a lost
  leader still held and schedule every job continuing from its last fire time in the database; on losing it,
  unschedule everything;
- as leader: start the run-now requests, give up on runs past their max runtime, publish each job's next run time.

APScheduler supplies the policies: ``max_instances=1`` (a fire while the job still runs here is recorded as skipped),
``coalesce`` and ``misfire_grace_time`` (runs missed while no scheduler ran or all threads were busy become one run,
or one "missed" record when too late). The claim in ``jobs/runs.py`` keeps a job single across processes.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone

from controlplane import health, runtime
from controlplane.choices import JobTrigger
from controlplane.jobs import heartbeat, lease
from controlplane.jobs import registry as jobs
from controlplane.jobs import runs as jobruns
from controlplane.jobs import status as job_service
from controlplane.models import JobRunRequest, JobState

logger = logging.getLogger(__name__)

__all__ = ["HeartbeatWatch", "Scheduler"]


class InFlight:
    """Counts the runs in progress in this process, so a stop can wait for them."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *exc) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


class Scheduler(runtime.ServiceThread):
    """One scheduler process's worth of scheduling. ``step()`` is the whole loop body; tests call it directly with
    a controllable ``clock`` and without ``start()`` (then jobs are scheduled but nothing runs)."""

    name = "scheduler"
    idle_s = 1.0

    def __init__(
        self, *, clock: jobruns.Clock = timezone.now, lease_s: float | None = None, renew_s: float | None = None
    ) -> None:
        super().__init__()
        self.clock = clock
        self.id = jobruns.runner_id("scheduler")
        self.lease_s = lease_s or settings.SCHEDULER_LEASE_S
        self.renew_s = renew_s or settings.SCHEDULER_RENEW_S
        self.is_leader = False
        self._said_standby = False
        self.lease_until: datetime | None = None
        self._next_renew: datetime | None = None
        self._published: dict[str, datetime | None] = {}
        self.inflight = InFlight()
        self.aps = BackgroundScheduler(
            timezone=ZoneInfo("UTC"),
            executors={"default": ThreadPoolExecutor(settings.SCHEDULER_THREADS)},
            job_defaults={"max_instances": 1},
        )
        self.aps.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)

    def start(self, loop=None) -> None:
        self.aps.start()
        super().start(loop)

    # --- the loop ----------------------------------------------------------------------------------------------
    def step(self) -> bool:
        now = self.clock()
        if self._next_renew is None or now >= self._next_renew:
            self._next_renew = now + timedelta(seconds=self.renew_s)
            self.renew(now)
            if self.is_leader:
                jobruns.lapse_overdue(now)
        if not self.is_leader:
            return False
        taken = job_service.take_requests(self.id, now)
        for request in taken:
            args = [request.pk, request.job, request.requested_by_id]
            self.aps.add_job(self._run_requested, args=args, id=f"request-{request.pk}", misfire_grace_time=None)
        self._publish_next_runs()
        return bool(taken)

    def renew(self, now: datetime) -> None:
        try:
            held = lease.acquire(self.id, now, self.lease_s)
        except DatabaseError:
            logger.exception("scheduler %s could not reach the database to renew its lock", self.id)
            # Nobody can take the lock before it expires; stop acting one renewal before that.
            held = (
                self.is_leader
                and self.lease_until is not None
                and now + timedelta(seconds=self.renew_s) < self.lease_until
            )
        else:
            if held:
                self.lease_until = now + timedelta(seconds=self.lease_s)
        if held and not self.is_leader:
            self._lead(now)
        elif not held and self.is_leader:
            self._stand_by()
        elif not held and not self._said_standby:
            logger.info("scheduler %s stands by: another scheduler holds the lock", self.id)
            self._said_standby = True

    def _lead(self, now: datetime) -> None:
        self.is_leader = True  # before scheduling: a job due at once checks it in its thread
        try:
            lost = jobruns.release_claims_of_others(self.id, now)
            if lost:
                logger.warning("scheduler %s freed %d job(s) held by a scheduler that stopped", self.id, lost)
            jobruns.ensure_states(jobs.JOBS.names())
            for job in jobs.JOBS:
                self._schedule(job, now)
        except Exception:
            self._stand_by("could not schedule the jobs")  # retried at the next renewal
            raise
        logger.info("scheduler %s leads: it runs the jobs", self.id)

    def _schedule(self, job: jobs.Job, now: datetime) -> None:
        """Continue the job's schedule from its last fire time in the database (any scheduler's), so that the runs
        due while no scheduler led are coalesced or recorded as missed by the job's policy."""
        trigger = job.make_trigger()
        next_run = trigger.get_next_fire_time(jobruns.last_fire(job.name), now)
        self.aps.add_job(
            self._run_scheduled,
            trigger=trigger,
            args=[job.name],
            id=job.name,
            name=job.name,
            next_run_time=next_run,
            coalesce=job.coalesce,
            misfire_grace_time=job.misfire_grace_s,
            replace_existing=True,
        )

    def _stand_by(self, reason: str = "lost the lock") -> None:
        logger.warning("scheduler %s %s: it stands by", self.id, reason)
        self.is_leader = False
        self.aps.remove_all_jobs()
        self._published.clear()

    def _publish_next_runs(self) -> None:
        current = {job.id: job.next_run_time for job in self.aps.get_jobs() if job.id in jobs.JOBS}
        for name, when in current.items():
            if self._published.get(name, "unset") != when:
                JobState.objects.filter(job=name).update(next_run_at=when)
        self._published = current

    # --- in the thread pool ------------------------------------------------------------------------------------
    def _run_scheduled(self, name: str) -> None:
        if not self.is_leader:
            return
        try:
            with self.inflight:
                jobruns.execute(name, owner=self.id, trigger=JobTrigger.SCHEDULE, clock=self.clock)
        finally:
            connections.close_all()

    def _run_requested(self, request_id: int, name: str, requested_by_id: int | None) -> None:
        try:
            with self.inflight:
                run = jobruns.execute(
                    name, owner=self.id, trigger=JobTrigger.MANUAL, clock=self.clock, requested_by_id=requested_by_id
                )
                JobRunRequest.objects.filter(pk=request_id).update(run=run)
        except LookupError:
            logger.warning("run-now request %s names job %s, which no longer exists", request_id, name)
        finally:
            connections.close_all()

    def _on_event(self, event: JobEvent) -> None:
        if event.job_id not in jobs.JOBS:
            return
        try:
            if event.code == EVENT_JOB_MISSED:
                jobruns.record_missed(event.job_id, event.scheduled_run_time, self.id, self.clock())
            else:
                jobruns.record_skipped(event.job_id, self.id, self.clock(), scheduled_for=event.scheduled_run_times[-1])
        finally:
            connections.close_all()

    # --- stopping ----------------------------------------------------------------------------------------------
    def on_stop(self) -> None:
        """After the loop: schedule nothing more, give running jobs SCHEDULER_SHUTDOWN_WAIT_S to finish, record the
        others as interrupted, and release the lock so a standby takes over at once."""
        was_leader, self.is_leader = self.is_leader, False
        if self.aps.running:
            self.aps.remove_all_jobs()
            if not self.inflight.wait_idle(settings.SCHEDULER_SHUTDOWN_WAIT_S):
                logger.warning("scheduler %s stops with jobs still running", self.id)
            self.aps.shutdown(wait=False)
        if was_leader:
            now = self.clock()
            jobruns.abandon_runs(self.id, now)
            JobState.objects.filter(job__in=list(self._published)).update(next_run_at=None)
            lease.release(self.id, now)
            logger.info("scheduler %s released the lock", self.id)


class HeartbeatWatch(runtime.ServiceThread):
    """In every ``serve`` process: raises the ``scheduler_heartbeat`` alert when jobs stop running, wherever the
    scheduler runs (in this process, in another, or nowhere)."""

    name = "scheduler-heartbeat"
    idle_s = 15.0

    def __init__(self, clock: jobruns.Clock = timezone.now) -> None:
        super().__init__()
        self.clock = clock
        self.watcher = heartbeat.HeartbeatWatcher(clock())

    def step(self) -> bool:
        self.watcher.check(self.clock())
        return False


def _in_process_scheduler() -> Scheduler | None:
    return Scheduler() if settings.SCHEDULER_IN_PROCESS else None


runtime.register(_in_process_scheduler, order=50)
runtime.register(HeartbeatWatch, order=60)
health.READINESS_CHECKS["scheduler"] = heartbeat.readiness
