"""``/metrics``: everything the control plane knows, in the Prometheus text format.

* GPU and host series as NVIDIA's DCGM exporter names them (``gpu_prometheus.py``), from the collector's last tick;
* worker series in vLLM's style (``lcp_worker_num_requests_running``, ``..._prompt_tokens_total``; labels
  ``deployment`` and ``model_name``), from the series the service kept of each local worker's last ``/control/stats``;
  names, help texts and types of the GPU, host and worker series come from the table in ``series.py``;
* leak detection per watched memory series (state, growth rate, projected time to OOM);
* the gateway's request, latency, token and cache series (``gateway_metrics.py``);
* the control-plane process itself (``process_*``, ``python_*``).

Other modules add collectors with ``register(collector)``. The exposition passes ``promtool check metrics``
(tests/controlplane/monitoring/test_metrics_endpoint.py runs it).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import gateway_metrics
from .families import TableFamilies
from .gpu_prometheus import STATUS_FAMILIES as GPU_STATUS_FAMILIES
from .gpu_prometheus import GpuHostMetricsCollector
from .service import current

__all__ = ["STATUS_FAMILIES", "exposition", "register", "registry"]

registry = CollectorRegistry(auto_describe=False)

_LEAK_STATES = {"ok": 0.0, "suspect": 1.0, "leak": 2.0}

STATUS_FAMILIES = (
    *GPU_STATUS_FAMILIES,
    "lcp_worker_up",
    "lcp_worker_info",
    "lcp_memory_leak_state",
    "lcp_memory_growth_bytes_per_second",
    "lcp_memory_time_to_oom_seconds",
    "lcp_memory_level_bytes",
    "lcp_memory_limit_bytes",
    "lcp_metrics_collector_tick_cpu_seconds",
)
"""Families of this registry that are not series of the table (``series.py``): whether a worker answers, its process,
the leak detector's verdicts, the collector's own cost. Everything else here is derived from the table."""


class WorkerMetricsCollector(Collector):
    """Worker, leak and collector series from the running metrics service (nothing before its first tick)."""

    def collect(self) -> Iterator[Metric]:
        service = current()
        if service is None:
            return
        labels = ["deployment", "model_name"]
        families = TableFamilies("worker", labels)
        up = GaugeMetricFamily(
            "lcp_worker_up", "1 if the worker answered its last stats request, 0 if it should have.", labels=labels
        )
        info = GaugeMetricFamily(
            "lcp_worker_info",
            "The worker process of a deployment (join GPU per-process series on pid).",
            labels=[*labels, "pid", "device", "precision"],
        )
        for reading in service.worker_readings():
            model = reading.stats.get("model") or {}
            values = [reading.name, str(model.get("id") or model.get("path") or "")]
            up.add_metric(values, 1.0)
            info.add_metric(
                [
                    *values,
                    str(reading.pid or ""),
                    str(reading.stats.get("device") or ""),
                    str(reading.stats.get("precision") or ""),
                ],
                1.0,
            )
            families.add(reading.series, values)  # the service keeps only the numbers a worker reported
        for name in service.unreachable.values():
            up.add_metric([name, ""], 0.0)
        yield up
        yield info
        yield from families

        leak_labels = ["deployment", "kind"]
        state = GaugeMetricFamily(
            "lcp_memory_leak_state", "Leak detector verdict: 0 ok, 1 suspect, 2 leak.", labels=leak_labels
        )
        slope = GaugeMetricFamily(
            "lcp_memory_growth_bytes_per_second",
            "Growth of the memory floor (Theil-Sen slope, load and GC saw-tooth removed).",
            labels=leak_labels,
        )
        oom = GaugeMetricFamily(
            "lcp_memory_time_to_oom_seconds",
            "Projected time until the memory limit at the current growth (only while growing).",
            labels=leak_labels,
        )
        level = GaugeMetricFamily(
            "lcp_memory_level_bytes",
            "Recent peak of the watched memory series (the leak detector's level).",
            labels=leak_labels,
        )
        limit = GaugeMetricFamily(
            "lcp_memory_limit_bytes", "The limit time to OOM is projected against.", labels=leak_labels
        )
        names = {reading.deployment_id: reading.name for reading in service.worker_readings()}
        for row in service.leak_statuses():
            values = [names.get(row["deployment"], str(row["deployment"])), row["kind"]]
            state.add_metric(values, _LEAK_STATES[row["state"]])
            slope.add_metric(values, row["slope_bytes_per_s"])
            if row["time_to_oom_s"] is not None:
                oom.add_metric(values, row["time_to_oom_s"])
            if row["level_bytes"] is not None:
                level.add_metric(values, row["level_bytes"])
            if row["limit_bytes"] is not None:
                limit.add_metric(values, row["limit_bytes"])
        yield state
        yield slope
        yield oom
        yield level
        yield limit
        yield GaugeMetricFamily(
            "lcp_metrics_collector_tick_cpu_seconds",
            "CPU time of the collector's last tick, publishing included.",
            value=service.tick_cpu_s,
        )


def _snapshot():
    service = current()
    return service.last_snapshot if service is not None else None


def register(collector: Collector) -> None:
    """Add a collector to ``/metrics``."""
    registry.register(collector)


register(GpuHostMetricsCollector(_snapshot))
register(WorkerMetricsCollector())


def exposition() -> bytes:
    """The text ``/metrics`` answers: this registry, the gateway's, then the process's own."""
    return b"".join(generate_latest(r) for r in (registry, gateway_metrics.registry, PROCESS_REGISTRY))
