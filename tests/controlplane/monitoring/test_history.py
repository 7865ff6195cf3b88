"""Metric history: rollups in the database, pruning, and the history API (validation and answers)."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.jobs import registry as jobs
from controlplane.models import MetricRollup, Node
from controlplane.monitoring import history
from controlplane.monitoring import store as store_module
from controlplane.monitoring.store import SampleStore


@pytest.fixture
def local_node(db):
    return Node.objects.create(hostname="here", cpu_cores=2, memory_bytes=2**34, is_local=True)


@pytest.fixture
def store(monkeypatch, settings):
    settings.METRICS_LIVE_WINDOW_S = 600
    fresh = SampleStore(live_window_s=600)
    monkeypatch.setattr(store_module, "_default", fresh)
    return fresh


def _minute(ago_min: int) -> float:
    now = time.time()
    return (now // 60 - ago_min) * 60


def test_persist_upserts_so_a_minute_written_twice_keeps_the_last_figures(local_node):
    s = SampleStore()
    t = _minute(5)
    s.add(t, {"a": 1.0})
    s.add(t + 30, {"a": 3.0})
    history.persist(local_node, s.take_all())
    s.add(t + 45, {"a": 5.0})
    history.persist(local_node, s.take_all())
    [row] = MetricRollup.objects.all()
    assert (row.series, row.min, row.max, row.count, row.mean) == ("a", 5.0, 5.0, 1, 5.0)
    assert row.minute == datetime.fromtimestamp(t, tz=UTC)


def test_prune_deletes_rollups_past_the_retention_and_is_a_scheduled_job(local_node, settings):
    settings.METRICS_RETENTION_DAYS = 7
    now = datetime.now(tz=UTC).replace(second=0, microsecond=0)
    for days in (1, 6, 8, 30):
        MetricRollup.objects.create(
            node=local_node, series="a", minute=now - timedelta(days=days), min=1, mean=1, max=1, count=1
        )
    result = history.prune(now)
    assert result["deleted"] == 2
    assert sorted((now - r.minute).days for r in MetricRollup.objects.all()) == [1, 6]
    assert jobs.JOBS["prune_metrics"].func is history.prune


def test_query_from_rollups_merges_the_database_and_the_minutes_in_memory(clients, local_node, store):
    base = _minute(10)
    for i in range(8):  # eight minutes in the database: a = i
        MetricRollup.objects.create(
            node=local_node,
            series="gpu.0.util",
            minute=datetime.fromtimestamp(base + 60 * i, tz=UTC),
            min=i,
            mean=i,
            max=i,
            count=60,
        )
    now = time.time()
    store.add(now - 1, {"gpu.0.util": 100.0})  # the minute in progress
    response = clients["viewer"].get(
        "/api/v1/metrics/query/", {"series": "gpu.0.util", "start": base, "end": now, "step": 120}
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["source"] == "rollups" and body["step"] == 120
    points = body["series"]["gpu.0.util"]
    assert [p[0] for p in points[:4]] == [base, base + 120, base + 240, base + 360]
    assert points[0][1:] == [0.5, 0.0, 1.0]  # mean of minutes 0 and 1, their min and max
    assert points[-1][3] == 100.0  # the store's minute in progress is in the last bucket


def test_query_with_a_small_step_answers_raw_samples_from_memory(clients, local_node, store):
    now = time.time()
    for i in range(20):
        store.add(now - 20 + i, {"host.cpu_pct": float(i)})
    response = clients["viewer"].get("/api/v1/metrics/query/", {"series": "host.cpu_pct", "start": -30, "step": 5})
    assert response.status_code == 200, response.json()
    points = response.json()["series"]["host.cpu_pct"]
    assert response.json()["source"] == "raw"
    assert sum(1 for _ in points) >= 4
    assert min(p[2] for p in points) == 0.0 and max(p[3] for p in points) == 19.0


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({}, "series", "give at least one series"),
        ({"series": "no.such.series"}, "series", "unknown series names, not in the table of series"),
        ({"series": "worker.99.rss_bytes"}, "series", "unknown series on node"),
        ({"series": "host.cpu_pct", "start": "-60", "end": "-120"}, "start", "must be before end"),
        ({"series": "host.cpu_pct", "start": "yesterday"}, "start", "ISO 8601"),
        ({"series": "host.cpu_pct", "step": "0"}, "step", "positive"),
        ({"series": "host.cpu_pct", "step": "fast"}, "step", "number of seconds"),
        ({"series": "host.cpu_pct", "start": "-864000", "step": "1"}, "step", "the most is 5000"),
        ({"series": "host.cpu_pct", "start": "-3000", "step": "10"}, "step", "raw samples"),
        ({"series": "host.cpu_pct", "node": "x"}, "node", "must be a node id"),
        ({"series": "host.cpu_pct", "node": "999"}, "node", "no node with id 999"),
        ({"series": "host.cpu_pct", "end": "nan"}, "end", "finite"),
    ],
)
def test_malformed_history_queries_get_a_400_naming_the_field(clients, local_node, store, params, field, message):
    store.add(time.time() - 1, {"host.cpu_pct": 1.0})
    response = clients["viewer"].get("/api/v1/metrics/query/", params)
    assert response.status_code == 400
    assert message in " ".join(response.json()[field])


def test_series_lists_memory_and_database_names_and_the_api_needs_a_login(clients, local_node, store):
    store.add(time.time(), {"host.cpu_pct": 1.0})
    MetricRollup.objects.create(
        node=local_node, series="gpu.3.util", minute=datetime.now(tz=UTC), min=1, mean=1, max=1, count=1
    )
    response = clients["viewer"].get("/api/v1/metrics/series/")
    assert response.json()["series"] == ["gpu.3.util", "host.cpu_pct"]
    for path in ("/api/v1/metrics/series/", "/api/v1/metrics/query/?series=host.cpu_pct", "/api/v1/metrics/leaks/"):
        assert clients["anonymous"].get(path).status_code == 401


def test_latest_and_leaks_answer_before_the_collector_ran(clients, local_node, store):
    assert clients["viewer"].get("/api/v1/metrics/latest/").json() == {"ts": None, "series": {}, "nvml": None}
    assert clients["viewer"].get("/api/v1/metrics/leaks/").json() == {"count": 0, "results": []}
