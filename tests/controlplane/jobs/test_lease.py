"""The scheduler lock: one leader, renewal, takeover after the lease, release on a clean stop."""

from datetime import timedelta

import pytest
from django.db import OperationalError

from controlplane.choices import JobOutcome
from controlplane.jobs import lease
from controlplane.jobs import registry as jobs
from controlplane.jobs import runs as jobruns
from controlplane.jobs.scheduler import Scheduler
from controlplane.models import JobRun, JobState, SchedulerLease

pytestmark = pytest.mark.django_db

LEASE = 30


def test_the_first_scheduler_takes_the_lock_and_a_second_one_stands_by(clock):
    assert lease.acquire("scheduler:a", clock(), LEASE)
    assert not lease.acquire("scheduler:b", clock(), LEASE)
    assert lease.holder(clock()).owner == "scheduler:a"
    assert SchedulerLease.objects.count() == 1


def test_the_leader_renews_its_lease_and_keeps_the_time_it_took_the_lock(clock):
    taken_at = clock()
    lease.acquire("scheduler:a", clock(), LEASE)
    clock.advance(20)
    assert lease.acquire("scheduler:a", clock(), LEASE)
    clock.advance(20)  # past the first lease, inside the renewed one
    assert not lease.acquire("scheduler:b", clock(), LEASE)
    row = SchedulerLease.objects.get()
    assert row.acquired_at == taken_at
    assert row.expires_at == taken_at + timedelta(seconds=20 + LEASE)


def test_a_standby_takes_over_only_once_the_lease_has_expired(clock):
    lease.acquire("scheduler:a", clock(), LEASE)
    clock.advance(LEASE - 1)
    assert not lease.acquire("scheduler:b", clock(), LEASE)
    clock.advance(1)
    assert lease.acquire("scheduler:b", clock(), LEASE)
    assert SchedulerLease.objects.get().acquired_at == clock()
    assert not lease.acquire("scheduler:a", clock(), LEASE), "the old leader cannot renew a lease it lost"


def test_releasing_the_lock_lets_a_standby_take_it_at_once(clock):
    lease.acquire("scheduler:a", clock(), LEASE)
    assert lease.release("scheduler:a", clock())
    assert lease.holder(clock()) is None
    assert lease.acquire("scheduler:b", clock(), LEASE)
    assert not lease.release("scheduler:a", clock()), "only the owner can release"


def test_of_two_schedulers_only_the_leader_schedules_jobs_and_the_standby_takes_over_after_the_lease(clock):
    first, second = Scheduler(clock=clock, lease_s=LEASE, renew_s=5), Scheduler(clock=clock, lease_s=LEASE, renew_s=5)
    first.step()
    second.step()
    assert first.is_leader and not second.is_leader
    assert {job.id for job in first.aps.get_jobs()} == set(jobs.JOBS.names())
    assert second.aps.get_jobs() == []
    assert JobState.objects.get(job="heartbeat").next_run_at is not None

    for _ in range(10):  # the leader keeps renewing: the standby never gets in
        clock.advance(5)
        first.step()
        second.step()
    assert first.is_leader and not second.is_leader

    clock.advance(LEASE)  # the leader stops renewing (killed): after its lease the standby leads
    second.step()
    assert second.is_leader
    first.step()
    assert not first.is_leader and first.aps.get_jobs() == []


def test_a_new_leader_frees_the_jobs_a_lost_leader_still_held(clock, signals):
    first, second = Scheduler(clock=clock, lease_s=LEASE), Scheduler(clock=clock, lease_s=LEASE)
    first.step()
    run = JobRun.objects.create(job="heartbeat", started_at=clock(), scheduler_id=first.id)
    assert jobruns.claim("heartbeat", run, first.id, clock(), max_runtime_s=3600)
    clock.advance(LEASE)
    second.step()
    assert second.is_leader
    run.refresh_from_db()
    assert run.outcome == JobOutcome.FAILED and "lost" in run.error
    assert JobState.objects.get(job="heartbeat").running_run is None
    assert [s["key"] for s in signals if s["kind"] == "job_failure" and s["firing"]] == ["heartbeat"]


def test_stopping_the_leader_releases_the_lock(clock):
    scheduler = Scheduler(clock=clock, lease_s=LEASE)
    scheduler.step()
    scheduler.stop()
    assert lease.holder(clock()) is None
    assert SchedulerLease.objects.get().owner == ""
    assert JobState.objects.exclude(next_run_at=None).count() == 0


def test_a_leader_that_cannot_reach_the_database_stops_acting_before_its_lease_expires(clock, monkeypatch):
    scheduler = Scheduler(clock=clock, lease_s=LEASE, renew_s=5)
    scheduler.step()

    def unreachable(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(lease, "acquire", unreachable)
    clock.advance(20)
    scheduler.step()
    assert scheduler.is_leader, "20 s into a 30 s lease nobody else can have it"
    clock.advance(5)
    scheduler.step()
    assert not scheduler.is_leader and scheduler.aps.get_jobs() == [], "one renewal before expiry it steps down"
