"""docs/grafana/llm-control-plane.json: importable, and every metric its PromQL names is one ``/metrics`` exports.

The metric names are not listed here: they come from the real exposition (``prometheus.exposition()``), built with a
fake NVML snapshot, a stub metrics service with one worker and its leak rows, and the gateway's registry. Renaming a
metric in the code without updating the dashboard fails ``test_every_metric_in_the_dashboard_is_exported``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.monitoring import prometheus, series
from controlplane.monitoring import service as service_module
from controlplane.monitoring.collectors import LocalCollector, NvmlCollector
from controlplane.monitoring.service import WorkerReading, worker_series
from tests.fakes.pynvml_fake import FakeGpu, FakeNvml, GiB

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana" / "llm-control-plane.json"

# Sample names each family type puts in the text format (prometheus_client also writes *_created for counters and
# histograms).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}

# PromQL words that look like metric names: aggregations, functions, keywords, and modifiers.
_PROMQL_WORDS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "atan2",
        "inf",
        "nan",
        "start",
        "end",
        "abs",
        "absent",
        "absent_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "delta",
        "deriv",
        "exp",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "double_exponential_smoothing",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "ln",
        "log2",
        "log10",
        "minute",
        "month",
        "predict_linear",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sort",
        "sort_desc",
        "sort_by_label",
        "sort_by_label_desc",
        "sqrt",
        "time",
        "timestamp",
        "vector",
        "year",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "quantile_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "last_over_time",
        "present_over_time",
        "mad_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "cos",
        "cosh",
        "sin",
        "sinh",
        "tan",
        "tanh",
        "deg",
        "rad",
        "pi",
        "label_values",
        "label_names",
        "query_result",
    ]
)

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier not glued to a preceding word character, dot or colon (so the ``e6`` of ``1e6`` is not one).
_IDENTIFIER = re.compile(r"(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression (or a Grafana ``label_values(metric, label)`` query) reads."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("{}", text)  # label names and values
    text = _BRACKETS.sub("[]", text)  # range durations, subqueries, $__rate_interval
    text = _GROUPING.sub(r"\1", text)  # by (le, deployment) ...
    text = re.sub(r"(label_values|label_names)\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,[^)]*\)", r"\1(\2)", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        if word in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def test_metric_names_extracts_only_the_metrics():
    expr = (
        'histogram_quantile(0.99, sum by (le, deployment) (rate(foo_seconds_bucket{deployment=~"$deployment", '
        'le!="+Inf"}[$__rate_interval]))) * 1e6 / on (gpu) group_left (pid) bar:recorded offset 5m'
    )
    assert metric_names(expr) == {"foo_seconds_bucket", "bar:recorded"}
    assert metric_names("label_values(lcp_host_cpus, Hostname)") == {"lcp_host_cpus"}
    assert metric_names("sum without (pid) (baz) and ignoring (x) qux > bool 2") == {"baz", "qux"}


# -- the exposition ---------------------------------------------------------------------------------------------------


def _snapshot():
    nvml = FakeNvml(
        [
            FakeGpu(
                name="NVIDIA H200",
                memory_total=141 * GiB,
                memory_used=40 * GiB,
                util_gpu=87,
                util_mem=45,
                compute_processes={4242: 39 * GiB},
            )
        ]
    )
    local = LocalCollector(nvml=NvmlCollector(nvml), hostname="gpu-node-1")
    local.tick()
    time.sleep(0.05)  # the host's CPU share needs two ticks
    local.tick()
    return local.latest_snapshot()


def _service():
    snapshot = _snapshot()
    previous = {"batch_size_histogram": {"1": 1, "4": 1}}
    stats = dict.fromkeys(series.stats_fields(), 1.0)  # every /control/stats field the table copies
    stats["model"] = {"id": "tiny-moe"}
    stats["expert_activation_shares"] = {"total": [0.5, 0.25, 0.25]}
    stats["batch_size_histogram"] = {"1": 3, "4": 2}
    reading = WorkerReading(
        deployment_id=7,
        name="demo",
        pid=4242,
        stats=stats,
        series=worker_series(7, stats, snapshot, 4242, previous),
    )
    leak_rows = [
        {
            "deployment": 7,
            "kind": "rss_bytes",
            "state": "suspect",
            "slope_bytes_per_s": 1e5,
            "time_to_oom_s": 3600.0,
            "level_bytes": 2.0 * GiB,
            "limit_bytes": 64.0 * GiB,
        }
    ]
    return SimpleNamespace(
        worker_readings=lambda: [reading],
        unreachable={8: "down"},
        leak_statuses=lambda: leak_rows,
        tick_cpu_s=0.002,
        last_snapshot=snapshot,
    )


@pytest.fixture(scope="module")
def exposition_text() -> str:
    saved = service_module._current
    service_module._current = _service()
    try:
        return prometheus.exposition().decode()
    finally:
        service_module._current = saved


@pytest.fixture(scope="module")
def exported(exposition_text) -> set[str]:
    """Every sample name ``/metrics`` can answer with: families with data, plus their type's suffixes."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition_text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_the_exposition_has_every_part(exported):
    """Guards the fixture: a stub that no longer matches the service would leave whole parts out."""
    for name in (
        "DCGM_FI_DEV_GPU_UTIL",
        "lcp_gpu_process_memory_used_bytes",
        "lcp_host_cpu_usage_ratio",
        "lcp_worker_up",
        "lcp_worker_generation_tokens_total",
        "lcp_worker_expert_activation_share",
        "lcp_memory_leak_state",
        "lcp_memory_time_to_oom_seconds",
        "lcp_gateway_requests_total",
        "lcp_gateway_e2e_request_latency_seconds_bucket",
        "process_cpu_seconds_total",
    ):
        assert name in exported, name


# -- the dashboard ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row keeps its panels inside


def _queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield f"variable {variable['name']}", query["query"] if isinstance(query, dict) else query


def test_the_dashboard_is_importable(dashboard):
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] and dashboard["title"]
    [source] = dashboard["__inputs"]
    assert source["name"] == "DS_PROMETHEUS" and source["type"] == "datasource" and source["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["Hostname"]["definition"] == "label_values(lcp_host_cpus, Hostname)"
    assert variables["deployment"]["definition"] == "label_values(lcp_worker_up, deployment)"
    assert variables["deployment"]["multi"] and variables["deployment"]["includeAll"]
    for variable in variables.values():
        assert variable["datasource"]["uid"] == "${DS_PROMETHEUS}"


def test_every_panel_has_a_datasource_a_target_and_a_unique_id(dashboard):
    panels = list(_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    graphs = [panel for panel in panels if panel["type"] != "row"]
    assert graphs
    for panel in graphs:
        where = f"panel {panel['id']} {panel['title']!r}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, where
        assert panel["targets"], where
        assert panel["fieldConfig"]["defaults"].get("unit"), where
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target["expr"].strip(), where
            assert target.get("datasource", panel["datasource"])["uid"] == "${DS_PROMETHEUS}", where


def test_every_metric_in_the_dashboard_is_exported(dashboard, exported):
    missing = []
    for where, expr in _queries(dashboard):
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        missing += [f"{where}: {name}" for name in sorted(names - exported)]
    assert not missing, "metrics the exposition does not have:\n" + "\n".join(missing)


# -- the table of series ----------------------------------------------------------------------------------------------


def _declared() -> set[str]:
    """Sample names the table of series declares, and the status families prometheus.py builds beside it."""
    return {export.name for _, export in series.exports()} | set(prometheus.STATUS_FAMILIES)


def test_every_series_family_of_the_dashboard_is_declared_in_the_table(dashboard):
    """A GPU, host or worker metric of the dashboard is an export of the table (or a status family): the table, not
    the dashboard, says what a series is called on /metrics."""
    ours = re.compile(r"^(DCGM_FI_|lcp_(gpu|host|worker|nvml|memory|metrics)_)")
    undeclared = []
    for where, expr in _queries(dashboard):
        undeclared += [f"{where}: {name}" for name in sorted(metric_names(expr)) if ours.match(name)]
    undeclared = [line for line in undeclared if line.rpartition(": ")[2] not in _declared()]
    assert not undeclared, "metrics the table of series does not declare:\n" + "\n".join(undeclared)


def test_every_export_of_the_table_is_on_metrics_with_its_type(exposition_text):
    """/metrics is derived from the table: each declared family is there, as a gauge or a counter, with its help."""
    families = {family.name: family for family in text_string_to_metric_families(exposition_text)}
    for entry, export in series.exports():
        family_name = export.name.removesuffix("_total") if export.type == "counter" else export.name
        family = families.get(family_name)
        assert family is not None, f"{entry.name}: {export.name} is not exported"
        assert family.type == export.type and family.documentation == export.help, export.name
        assert any(sample.name == export.name for sample in family.samples), f"{export.name} has no sample"


def test_the_registry_families_are_the_table_and_the_status_families():
    """Nothing of the control plane's own registry (the gateway's and the process's aside) bypasses the table."""
    saved = service_module._current
    service_module._current = _service()
    try:
        names = {family.name for family in prometheus.registry.collect()}
    finally:
        service_module._current = saved
    declared = {export.name.removesuffix("_total") for _, export in series.exports()} | set(prometheus.STATUS_FAMILIES)
    assert names == declared
