"""``/metrics``: everything the control plane knows, in the Prometheus text format.

* GPU and host series as NVIDIA's DCGM exporter names them (``gpu_prometheus.py``), from the collector's last tick;
* worker series in vLLM's style (``lcp_worker_num_requests_running``, ``..._prompt_tokens_total``; labels
  ``deployment`` and ``model_name``), from the last ``/control/stats`` of each local worker;
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import gateway_metrics
from .gpu_prometheus import GpuHostMetricsCollector

__all__ = ["exposition", "register", "registry"]

registry = CollectorRegistry(auto_describe=False)

# /control/stats field -> (family name, help, gauge or counter)
_WORKER: dict[str, tuple[str, str, str]] = {
    "running": ("lcp_worker_num_requests_running", "Sequences in the running batch.", "gauge"),
    "queue_depth": ("lcp_worker_num_requests_waiting", "Requests waiting for a batch slot.", "gauge"),
    "sessions": ("lcp_worker_sessions", "Open sessions (each holds its KV cache until it ends or expires).", "gauge"),
    "kv_cache_bytes": ("lcp_worker_kv_cache_bytes", "KV-cache bytes: the batch pool plus open sessions.", "gauge"),
    "weight_bytes": ("lcp_worker_weight_bytes", "Bytes of the loaded model's weights.", "gauge"),
    "rss_bytes": ("lcp_worker_resident_memory_bytes", "Resident memory of the worker process.", "gauge"),
    "torch_allocated_bytes": ("lcp_worker_torch_allocated_bytes", "Memory held by torch tensors.", "gauge"),
    "torch_reserved_bytes": ("lcp_worker_torch_reserved_bytes", "Memory reserved by torch's allocator.", "gauge"),
    "tokens_per_s": ("lcp_worker_generation_tokens_per_second", "Tokens generated per second, last 10 s.", "gauge"),
    "requests_total": ("lcp_worker_requests", "Requests the worker finished.", "counter"),
    "errors_total": ("lcp_worker_request_errors", "Requests that ended in an error.", "counter"),
    "rejected_total": ("lcp_worker_requests_rejected", "Requests refused because the queue was full.", "counter"),
    "prompt_tokens_total": ("lcp_worker_prompt_tokens", "Prompt tokens processed.", "counter"),
    "generation_tokens_total": ("lcp_worker_generation_tokens", "Tokens generated.", "counter"),
}
_LEAK_STATES = {"ok": 0.0, "suspect": 1.0, "leak": 2.0}


class WorkerMetricsCollector(Collector):
    """Worker, leak and collector series from the running metrics service (nothing before its first tick)."""

    def collect(self) -> Iterator[Metric]:
        from .service import current

        service = current()
        if service is None:
            return
        labels = ["deployment", "model_name"]
        families: dict[str, Metric] = {}
        for field, (name, text, kind) in _WORKER.items():
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            families[field] = family_type(name, text, labels=labels)
        up = GaugeMetricFamily(
            "lcp_worker_up", "1 if the worker answered its last stats request, 0 if it should have.", labels=labels
        )
        info = GaugeMetricFamily(
            "lcp_worker_info",
            "The worker process of a deployment (join GPU per-process series on pid).",
            labels=[*labels, "pid", "device", "precision"],
        )
        batch = GaugeMetricFamily(
            "lcp_worker_batch_size_mean", "Mean sequences per forward pass over the last collector tick.", labels=labels
        )
        gpu = GaugeMetricFamily(
            "lcp_worker_gpu_memory_used_bytes", "GPU memory of the worker process (NVML).", labels=labels
        )
        experts = GaugeMetricFamily(
            "lcp_worker_expert_activation_share",
            "Share of routed token-slots each expert received since the model loaded (all MoE layers).",
            labels=[*labels, "expert"],
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
            mean = reading.series.get(f"worker.{reading.deployment_id}.batch_size_mean")
            if mean is not None:
                batch.add_metric(values, mean)
            for field, family in families.items():  # the service keeps only the numbers a worker reported
                value = reading.series.get(f"worker.{reading.deployment_id}.{field}")
                if value is not None:
                    family.add_metric(values, value)
            used = reading.series.get(f"worker.{reading.deployment_id}.gpu_mem_bytes")
            if used is not None:
                gpu.add_metric(values, used)
            shares = (reading.stats.get("expert_activation_shares") or {}).get("total") or []
            for index, share in enumerate(shares):
                experts.add_metric([*values, str(index)], float(share))
        for name in service.unreachable.values():
            up.add_metric([name, ""], 0.0)
        yield up
        yield info
        yield batch
        yield from families.values()
        yield gpu
        yield experts

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
    from .service import current

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
