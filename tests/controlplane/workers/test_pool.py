"""The WorkerPool with a fake clock, launcher and control API: start, crash, backoff, health, promote and drain."""

from __future__ import annotations

import pytest

from controlplane.workers.pool import Change, PoolSettings, WorkerPool, WorkerSpec

from .fakes import Clock, FakeLauncher, ports

SETTINGS = PoolSettings(
    start_timeout_s=60,
    health_interval_s=2,
    health_failures=3,
    backoff_base_s=1,
    backoff_max_s=8,
    backoff_reset_s=120,
    retire_grace_s=6,
    drain_timeout_s=30,
)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def launcher():
    return FakeLauncher()


@pytest.fixture
def pool(launcher, clock, tmp_path):
    return WorkerPool(launcher, settings=SETTINGS, log_dir=tmp_path, clock=clock, port_for=ports())


def spec(launcher, revision=1, name="demo"):
    return WorkerSpec(
        name=name,
        command=lambda port: ["worker", "--port", str(port)],
        env={"A": "1"},
        control=launcher.control,
        revision=revision,
    )


def start_ready(pool, launcher, key="deployment:1"):
    worker = pool.start(key, spec(launcher))
    launcher.state(worker).ready = True
    assert pool.check(key).change == Change.READY
    return worker


def test_a_worker_is_starting_until_its_model_is_loaded_then_ready_once_then_running(pool, launcher, clock):
    worker = pool.start("deployment:1", spec(launcher))
    assert launcher.processes[0].argv == ["worker", "--port", "9100"] and worker.url == "http://127.0.0.1:9100"
    launcher.state(worker).progress = {"phase": "loading", "percent": 40.0}
    outcome = pool.check("deployment:1")
    assert outcome.change == Change.STARTING and outcome.progress["percent"] == 40.0
    launcher.state(worker).ready = True
    assert pool.check("deployment:1").change == Change.READY
    assert pool.check("deployment:1").change == Change.RUNNING


def test_a_key_holds_one_worker(pool, launcher):
    pool.start("deployment:1", spec(launcher))
    with pytest.raises(RuntimeError, match="has a worker already"):
        pool.start("deployment:1", spec(launcher))


def test_a_crash_is_reported_with_its_exit_code_and_the_next_start_waits_for_a_growing_backoff(pool, launcher, clock):
    delays = []
    for _ in range(5):
        assert pool.due("deployment:1")
        start_ready(pool, launcher)
        launcher.processes[-1].code = 1
        outcome = pool.check("deployment:1")
        assert outcome.change == Change.EXITED and outcome.exit_code == 1 and "code 1" in outcome.reason
        assert pool.get("deployment:1") is None and not pool.due("deployment:1")
        delays.append(outcome.retry_in_s)
        clock.advance(outcome.retry_in_s - 0.01)
        assert not pool.due("deployment:1")
        clock.advance(0.01)
    assert delays == [1, 2, 4, 8, 8]  # doubles, capped at backoff_max_s


def test_the_backoff_resets_after_a_worker_stayed_healthy_for_a_while(pool, launcher, clock):
    for _ in range(3):
        start_ready(pool, launcher)
        launcher.processes[-1].code = 1
        clock.advance(pool.check("deployment:1").retry_in_s)
    start_ready(pool, launcher)
    for _ in range(70):  # 140 s of healthy checks, past backoff_reset_s
        clock.advance(2)
        assert pool.check("deployment:1").change == Change.RUNNING
    launcher.processes[-1].code = 1
    assert pool.check("deployment:1").retry_in_s == 1


def test_a_worker_that_never_becomes_ready_is_stopped_after_the_start_timeout(pool, launcher, clock):
    pool.start("deployment:1", spec(launcher))
    clock.advance(59)
    assert pool.check("deployment:1").change == Change.STARTING
    clock.advance(2)
    outcome = pool.check("deployment:1")
    assert outcome.change == Change.UNHEALTHY and "not ready 60 s after start" in outcome.reason
    assert launcher.processes[0].terminated


def test_a_worker_that_fails_its_health_check_three_times_in_a_row_is_stopped(pool, launcher, clock):
    worker = start_ready(pool, launcher)
    launcher.state(worker).healthy = False
    for _ in range(2):
        clock.advance(2)
        assert pool.check("deployment:1").change == Change.RUNNING
    clock.advance(1)
    assert pool.check("deployment:1").change == Change.RUNNING  # not due yet: no probe, no count
    clock.advance(1)
    outcome = pool.check("deployment:1")
    assert outcome.change == Change.UNHEALTHY and "failed 3 times in a row" in outcome.reason
    assert launcher.processes[0].terminated and pool.get("deployment:1") is None


def test_one_good_health_check_clears_the_failure_count(pool, launcher, clock):
    worker = start_ready(pool, launcher)
    state = launcher.state(worker)
    for healthy in (False, False, True, False, False):
        state.healthy = healthy
        clock.advance(2)
        assert pool.check("deployment:1").change == Change.RUNNING


def test_a_promoted_worker_takes_the_place_and_the_old_one_drains_before_it_stops(pool, launcher, clock):
    old = start_ready(pool, launcher)
    new = start_ready(pool, launcher, key="deployment:1:next")
    launcher.state(old).inflight = 2
    assert pool.promote("deployment:1:next", "deployment:1") is old
    assert pool.get("deployment:1") is new and pool.get("deployment:1:next") is None
    clock.advance(5)
    assert pool.step_retiring() == [] and not launcher.processes[0].terminated  # still in the grace period
    clock.advance(2)
    assert pool.step_retiring() == []  # past the grace period, but it still holds two requests
    launcher.state(old).inflight = 0
    assert pool.step_retiring() == [(old, 0)] and launcher.processes[0].terminated
    assert not launcher.processes[1].terminated and pool.retiring == []


def test_a_retiring_worker_that_never_empties_is_stopped_after_the_drain_timeout(pool, launcher, clock):
    old = start_ready(pool, launcher)
    start_ready(pool, launcher, key="deployment:1:next")
    launcher.state(old).inflight = 1
    pool.promote("deployment:1:next", "deployment:1")
    clock.advance(6 + 29)
    assert pool.step_retiring() == []
    clock.advance(2)
    assert [w for w, _ in pool.step_retiring()] == [old]


def test_stop_all_stops_running_and_retiring_workers(pool, launcher, clock):
    start_ready(pool, launcher)
    start_ready(pool, launcher, key="deployment:1:next")
    pool.promote("deployment:1:next", "deployment:1")
    pool.start("canary:3", spec(launcher))
    pool.stop_all()
    assert all(p.terminated for p in launcher.processes) and pool.workers == {} and pool.retiring == []
