"""The metrics service: one tick reads GPUs (fake NVML), the host and the workers' stats, feeds the store and the
leak detectors, writes rollups and publishes; a confirmed leak raises an alert and, by policy, restarts the worker."""

from __future__ import annotations

import math
import random

import pytest

from controlplane.choices import AlertKind, WorkerEventKind
from controlplane.models import GPU, Alert, MetricRollup, WorkerEvent
from controlplane.monitoring.collectors import LocalCollector, NvmlCollector
from controlplane.monitoring.leakwatch import LeakWatch, WatchedWorker
from controlplane.monitoring.service import worker_series
from controlplane.services import deployments as deployment_service
from controlplane.stats.leak import LeakState
from tests.fakes.pynvml_fake import FakeNvml, GiB

from .workers import MB, PID, T0, Clock, StubWorker, make_service


def test_one_tick_reads_gpus_host_and_workers_and_publishes_them(running, cpu_node):
    published, clock, worker = [], Clock(), StubWorker()
    service = make_service(cpu_node, worker, clock, published)
    payload = service.tick()
    clock.t += 1
    service.tick()
    series = published[-1]["series"]
    p = f"worker.{running.pk}."
    assert series["gpu.0.util"] == 0.0 and series["gpu.1.mem_total_bytes"] == 80 * GiB
    assert series["host.mem_total_bytes"] > 0
    assert series[p + "rss_bytes"] == 300 * MB and series[p + "sessions"] == 3 and series[p + "queue_depth"] == 1
    assert series[p + "gpu_mem_bytes"] == 2 * GiB  # NVML's per-process memory of the worker's pid
    assert series[p + "expert.0.share"] == 0.5
    assert series[p + "batch_size_mean"] == pytest.approx((1 * 1 + 4 * 2) / 3)  # one tick's forward passes
    assert payload["nvml"] == {"available": True, "reason": None}
    assert published[-1]["workers"] == {str(running.pk): running.name}
    assert service.store.latest()[1] == series
    # GPUs NVML found are in the inventory of the node
    assert sorted(GPU.objects.filter(node=cpu_node).values_list("index", "memory_total_bytes")) == [
        (0, 80 * GiB),
        (1, 80 * GiB),
    ]


def test_without_nvml_the_rest_carries_on_and_the_reason_is_published(running, cpu_node):
    published, clock = [], Clock()
    service = make_service(cpu_node, StubWorker(), clock, published)
    service.collector = LocalCollector(nvml=NvmlCollector(FakeNvml.without_library()), wall_clock=clock)
    payload = service.tick()
    assert payload["nvml"]["available"] is False and "LibraryNotFound" in payload["nvml"]["reason"]
    assert not any(name.startswith("gpu.") for name in payload["series"])
    assert f"worker.{running.pk}.rss_bytes" in payload["series"]


def test_a_worker_that_does_not_answer_is_skipped_for_that_tick(running, cpu_node):
    from controlplane.workers.client import WorkerUnavailable

    class Down(StubWorker):
        def stats(self, timeout=None):
            raise WorkerUnavailable("down")

    published = []
    service = make_service(cpu_node, Down(), Clock(), published)
    payload = service.tick()
    assert payload["workers"] == {}
    assert "host.mem_used_bytes" in payload["series"]
    assert not any(name.startswith("worker.") for name in payload["series"])


def test_finished_minutes_are_written_to_the_database(running, cpu_node):
    published, clock = [], Clock()
    service = make_service(cpu_node, StubWorker(), clock, published)
    for _ in range(61):
        service.tick()
        clock.t += 1
    rows = MetricRollup.objects.filter(node=cpu_node, series=f"worker.{running.pk}.rss_bytes")
    assert [(r.count, r.mean) for r in rows] == [(60, 300 * MB)]
    service.on_stop()  # the minute in progress is written on the way out
    assert MetricRollup.objects.filter(series=f"worker.{running.pk}.rss_bytes").count() == 2


def _leaking(rate_mb_per_min: float, seed: int = 0):
    rng = random.Random(seed)

    def rss(t: float) -> float:
        minutes = (t - T0) / 60
        saw = 20 * MB * ((t - T0) % 90) / 90  # garbage-collection saw-tooth
        return 400 * MB + rate_mb_per_min * MB * minutes + saw + rng.gauss(0, 2 * MB)

    return rss


def _run(service, worker, clock, seconds: int) -> None:
    for _ in range(seconds):
        worker.t = clock.t
        service.tick()
        clock.t += 1


@pytest.mark.parametrize("action", ["alert", "restart"])
def test_a_confirmed_leak_raises_an_alert_and_restarts_the_worker_when_the_policy_says_so(
    running, cpu_node, actor, action
):
    config = {**running.current_revision.config, "leak_action": action}
    deployment_service.update_deployment(actor, running, config=config)
    published, clock = [], Clock()
    worker = StubWorker(rss=_leaking(10))
    service = make_service(cpu_node, worker, clock, published)
    _run(service, worker, clock, 15 * 60)
    row = next(r for r in service.leak_statuses() if r["kind"] == "rss_bytes")
    alert = Alert.objects.get(kind=AlertKind.LEAK, deployment=running, key="rss_bytes")
    assert "grows" in alert.title and alert.values["growth_bytes_per_min"] == pytest.approx(10 * MB, rel=0.3)
    assert alert.series, "the alert carries the memory series for its chart"
    running.refresh_from_db()
    restarts = WorkerEvent.objects.filter(deployment=running, kind=WorkerEventKind.LEAK_RESTART)
    assert row["state"] == LeakState.LEAK and row["time_to_oom_s"] > 0
    assert {r["kind"]: r["state"] for r in published[-1]["leaks"]}["rss_bytes"] == "leak"
    if action == "restart":
        assert running.restart_requested_at is not None and restarts.count() == 1
        # the supervisor replaces the process: the leak goes with it and the alert resolves
        type(running).objects.filter(pk=running.pk).update(worker_pid=PID + 1)
        worker.rss = lambda t: 400 * MB
        _run(service, worker, clock, 1)
        alert.refresh_from_db()
        assert alert.state == "resolved"
        assert {r["state"] for r in service.leak_statuses()} == {"ok"}
    else:
        assert running.restart_requested_at is None and not restarts.exists()
        assert alert.state == "firing"


def test_stable_memory_with_load_raises_no_alert(running, cpu_node):
    published, clock = [], Clock()

    def kv(t):  # sessions come and go: memory follows the KV cache, nothing leaks
        return 50 * MB * (1 + math.sin((t - T0) / 300))

    worker = StubWorker(rss=lambda t: 400 * MB + kv(t) + random.gauss(0, 2 * MB), kv=kv)
    service = make_service(cpu_node, worker, clock, published)
    _run(service, worker, clock, 15 * 60)
    assert not Alert.objects.filter(kind=AlertKind.LEAK).exists()
    assert {r["state"] for r in service.leak_statuses()} <= {"ok", "suspect"}


def test_the_leak_watch_forgets_a_worker_that_restarted_and_clears_a_gone_one():
    watch = LeakWatch()
    rss = _leaking(10)
    changes = []
    for i in range(900):
        t = T0 + i
        changes += watch.update(t, {"worker.1.rss_bytes": rss(t)}, [WatchedWorker(1, 100, {"rss_bytes": 2**34})])
    assert [(c.before, c.status.state) for c in changes][-1][1] == LeakState.LEAK
    # a new pid: the old process's leak is gone with it
    changes = watch.update(T0 + 900, {"worker.1.rss_bytes": 400 * MB}, [WatchedWorker(1, 101)])
    assert [(c.before, c.status.state) for c in changes] == [(LeakState.LEAK, LeakState.OK)]
    # the worker goes away: nothing left to watch
    assert watch.update(T0 + 901, {}, []) == [] and watch.statuses() == []


def test_worker_series_leaves_out_what_the_worker_did_not_report():
    series = worker_series(7, {"rss_bytes": 5, "sessions": None, "queue_depth": True, "junk": "x"}, None, None)
    assert series == {"worker.7.rss_bytes": 5.0}


def test_while_the_database_is_away_ticks_go_on_and_rollups_wait(running, cpu_node, monkeypatch):
    from django.db import DatabaseError

    from controlplane.monitoring import history

    published, clock = [], Clock()
    service = make_service(cpu_node, StubWorker(), clock, published)
    service.tick()  # learns the node's workers

    def down(*args, **kwargs):
        raise DatabaseError("server closed the connection unexpectedly")

    monkeypatch.setattr(type(running).objects, "filter", down)
    monkeypatch.setattr(history, "persist", down)
    for _ in range(61):
        clock.t += 1
        payload = service.tick()
    assert payload["series"][f"worker.{running.pk}.rss_bytes"] == 300 * MB  # the worker is still read
    monkeypatch.undo()
    service.persist()
    assert MetricRollup.objects.filter(series=f"worker.{running.pk}.rss_bytes").count() >= 1
