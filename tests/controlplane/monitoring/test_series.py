"""The table of metric series (controlplane/monitoring/series.py) is the single source: every series a tick produces
matches exactly one entry, every entry is produced and used (on /metrics or on the live page), entries are checked
when registered, and a new entry reaches /metrics, the page, the websocket filter and the history API by itself."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.extensions import RegistryError
from controlplane.monitoring import series
from controlplane.monitoring.gpu_prometheus import GpuHostMetricsCollector
from controlplane.monitoring.series import Export, Series

from .workers import Clock, StubWorker, make_service


@pytest.fixture
def tick_series(running, cpu_node) -> dict[str, float]:
    """Every series of one tick after a first one: two fake NVML GPUs (one with the worker's process), the host, and
    a stub worker that reports every /control/stats field."""
    clock, published = Clock(), []
    service = make_service(cpu_node, StubWorker(), clock, published)
    service.tick()
    clock.t += 1
    return service.tick()["series"]


def _matches(name: str) -> list[str]:
    return [entry.name for entry in series.SERIES if re.match(entry.regex, name)]


def test_every_series_of_a_tick_matches_exactly_one_entry(tick_series):
    assert len(tick_series) > 40
    wrong = {name: found for name, found in ((n, _matches(n)) for n in tick_series) if len(found) != 1}
    assert not wrong, wrong


def test_every_entry_is_produced_by_a_tick_and_used(tick_series):
    produced = {series.match(name)[0].name for name in tick_series}
    assert produced == set(series.SERIES.names())
    for entry in series.SERIES:
        assert entry.prometheus or entry.chart, entry.name


def test_match_gives_the_entry_and_its_id_parts():
    entry, parts = series.match("gpu.1.proc.4242.mem_used_bytes")
    assert entry.name == "gpu_process_mem" and parts == {"gpu": 1, "pid": 4242}
    entry, parts = series.match("worker.12.expert.3.share")
    assert entry.name == "worker_expert_share" and parts == {"deployment": 12, "expert": 3}
    assert series.match("worker.12.expert.x.share") is None
    assert series.match("gpu.0.util.extra") is None
    assert series.deployment_of("worker.12.rss_bytes") == 12
    assert series.deployment_of("gpu.0.util") is None and series.deployment_of("nonsense") is None


def test_the_service_copies_the_tables_stats_series_and_nothing_else():
    from controlplane.monitoring.service import worker_series

    stats = {"rss_bytes": 1, "gpu_mem_bytes": 2, "unknown_field": 3, "generation_tokens_total": 4}
    assert worker_series(5, stats, None, None) == {"worker.5.rss_bytes": 1.0, "worker.5.generation_tokens_total": 4.0}
    assert "gpu_mem_bytes" not in series.stats_fields()  # computed from NVML, not copied


def test_the_page_table_puts_every_charted_series_on_a_known_chart():
    table = series.page_table()
    charts = [chart["id"] for chart in table["charts"]]
    assert charts[:3] == ["gpu-util", "gpu-mem", "worker-mem"] and "host-cpu" in charts
    charted = [row for row in table["series"] if row["chart"]]
    assert {row["chart"] for row in charted} == set(charts)  # no empty chart
    shares = next(row for row in charted if row["name"] == "worker_expert_share")
    assert shares["scale"] == 100.0 and shares["legend"] == "{worker} expert {expert}"
    assert re.match(shares["regex"], "worker.3.expert.7.share").groups() == ("3", "7")


# -- checks when registered -------------------------------------------------------------------------------------------


def _entry(**overrides) -> Series:
    fields = {
        "name": "worker_test_series",
        "pattern": "worker.{deployment}.test_series_bytes",
        "label": "A test series",
        "unit": "bytes",
        "source": "stats",
        "prometheus": (Export("lcp_worker_test_series_bytes", "A test series."),),
    }
    return Series(**(fields | overrides))


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"unit": "furlongs"}, "unit 'furlongs'"),
        ({"source": "guess"}, "source 'guess'"),
        ({"pattern": "worker.{deployment}.{node}.x"}, "id parts are"),
        ({"pattern": "disk.{gpu}.x"}, "starts with one of"),
        ({"pattern": "gpu.x.{gpu}", "source": "nvml"}, "gpu series are gpu.{gpu}"),
        ({"pattern": "worker.{deployment}.rss_bytes"}, "overlaps worker_rss"),
        ({"prometheus": (Export("lcp_worker_test_series", "x"),)}, "named *_bytes"),
        ({"prometheus": (Export("lcp_worker_test_series_bytes", "x", "counter"),)}, "end in _total"),
        ({"unit": "count", "prometheus": (Export("lcp_worker_test_series_total", "x"),)}, "end in _total"),
        ({"prometheus": (Export("lcp worker", "x"),)}, "not a valid Prometheus metric name"),
        ({"prometheus": (Export("lcp_worker_test_series_bytes", ""),)}, "help text"),
        ({"prometheus": (Export("DCGM_FI_DEV_TEST", "x"),)}, "DCGM names are for GPU gauges only"),
        ({"prometheus": (Export("lcp_worker_resident_memory_bytes", "x"),)}, "taken already"),
        ({"unit": "percent", "prometheus": (Export("lcp_worker_test_pct", "x"),)}, "_ratio"),
        ({"chart": "nowhere", "legend": "x"}, "chart 'nowhere'"),
        ({"chart": "tokens", "legend": "x"}, "cannot go on the tokens_per_second chart"),
        ({"chart": "worker_mem", "legend": "{gpu}"}, "legend"),
        ({"prometheus": (), "chart": None}, "nothing exports or draws"),
    ],
)
def test_an_entry_that_breaks_a_rule_is_refused(overrides, problem):
    with pytest.raises(RegistryError) as refused:
        series.SERIES.register(_entry(**overrides))
    assert problem in str(refused.value)
    assert "worker_test_series" not in series.SERIES


@pytest.fixture
def added():
    """A new worker series: one entry, nothing else."""
    entry = series.SERIES.register(
        _entry(chart="worker_mem", legend="{worker} test", prometheus=(Export("lcp_worker_test_series_bytes", "T."),))
    )
    series._clear()
    yield entry
    series.SERIES.unregister(entry.name)
    series._clear()


def test_a_new_entry_reaches_the_service_metrics_and_the_page(added, running, cpu_node):
    from controlplane.monitoring import prometheus
    from controlplane.monitoring import service as service_module

    class Reporting(StubWorker):
        def stats(self, timeout=None):
            return super().stats(timeout) | {"test_series_bytes": 123}

    service = make_service(cpu_node, Reporting(), Clock(), [])
    payload = service.tick()
    assert payload["series"][f"worker.{running.pk}.test_series_bytes"] == 123.0
    assert series.deployment_of(f"worker.{running.pk}.test_series_bytes") == running.pk
    saved, service_module._current = service_module._current, service
    try:
        text = prometheus.exposition().decode()
    finally:
        service_module._current = saved
    family = {f.name: f for f in text_string_to_metric_families(text)}["lcp_worker_test_series_bytes"]
    assert [(s.labels["deployment"], s.value) for s in family.samples] == [(running.name, 123.0)]
    assert any(row["legend"] == "{worker} test" for row in series.page_table()["series"])


def test_a_gpu_series_no_entry_declares_is_not_exported():
    """/metrics exports what the table declares: a series outside it stays in the store only."""
    registry = CollectorRegistry()
    snapshot = _FakeSnapshot()
    registry.register(GpuHostMetricsCollector(lambda: snapshot))
    names = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert "lcp_host_cpus" in names and "lcp_nvml_up" in names
    assert not any("undeclared" in name for name in names)


class _FakeHost:
    @staticmethod
    def series():
        return {"host.cpu_count": 4.0, "host.undeclared": 1.0}


class _FakeSnapshot:
    hostname = "h"
    gpus = ()
    nvml_available = False
    host = _FakeHost()


def test_the_docs_show_the_current_table():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[3] / "docs" / "monitoring.md").read_text()
    assert series.markdown_table() in docs, "paste series.markdown_table() into docs/monitoring.md"
