"""Prometheus exposition of the GPU and host readings, GPU series named as NVIDIA's DCGM exporter names them.

A custom collector: at each scrape it asks ``provider()`` for the latest :class:`Snapshot` and turns it into metric
families; nothing is stored here. Register it once per process::

    collector = LocalCollector()
    REGISTRY.register(GpuHostMetricsCollector(collector.latest_snapshot))

GPU families carry the DCGM exporter's labels ``gpu``, ``UUID``, ``device`` and ``Hostname``, so Grafana dashboards
and alert rules written for DCGM work unchanged. DCGM also has ``modelName``; ``promtool check metrics`` rejects that
label (camelCase), so the model name is in ``model_name`` by default, and in ``modelName`` as well with
``dcgm_model_name_label=True`` (DCGM-exact, at the cost of that promtool complaint). DCGM reports framebuffer memory
in MiB; those gauges keep DCGM's names and unit, and ``lcp_gpu_memory_*_bytes`` give the same in bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.monitoring.collectors.samples import GpuSample, Snapshot

__all__ = ["DCGM_GAUGES", "GpuHostMetricsCollector"]

log = logging.getLogger(__name__)

MiB = 1024 * 1024


def _mib(value: int | None) -> float | None:
    return None if value is None else value / MiB


# DCGM exporter name -> (help text as DCGM writes it, how to read it from a GpuSample)
DCGM_GAUGES: dict[str, tuple[str, Callable[[GpuSample], float | None]]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("GPU utilization (in %).", lambda s: s.util_gpu_pct),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("Memory utilization (in %).", lambda s: s.util_mem_pct),
    "DCGM_FI_DEV_FB_USED": ("Framebuffer memory used (in MiB).", lambda s: _mib(s.mem_used_bytes)),
    "DCGM_FI_DEV_FB_FREE": ("Framebuffer memory free (in MiB).", lambda s: _mib(s.mem_free_bytes)),
    "DCGM_FI_DEV_GPU_TEMP": ("GPU temperature (in C).", lambda s: s.temperature_c),
    "DCGM_FI_DEV_POWER_USAGE": ("Power draw (in W).", lambda s: s.power_w),
    "DCGM_FI_DEV_ENFORCED_POWER_LIMIT": ("Power limit the driver enforces (in W).", lambda s: s.power_limit_w),
    "DCGM_FI_DEV_SM_CLOCK": ("SM clock frequency (in MHz).", lambda s: s.sm_clock_mhz),
    "DCGM_FI_DEV_MEM_CLOCK": ("Memory clock frequency (in MHz).", lambda s: s.mem_clock_mhz),
}

_GPU_BYTES: dict[str, tuple[str, Callable[[GpuSample], float | None]]] = {
    "lcp_gpu_memory_used_bytes": ("GPU memory used (total minus free), in bytes.", lambda s: s.mem_used_bytes),
    "lcp_gpu_memory_free_bytes": ("GPU memory free, in bytes.", lambda s: s.mem_free_bytes),
    "lcp_gpu_memory_total_bytes": ("GPU memory installed, in bytes.", lambda s: s.mem_total_bytes),
}

_HOST: dict[str, tuple[str, str, float]] = {  # name -> (help, HostSample field, scale)
    "lcp_host_cpu_usage_ratio": ("Busy share of all host CPUs since the previous reading (0-1).", "cpu_pct", 0.01),
    "lcp_host_cpus": ("Logical CPUs of the host.", "cpu_count", 1.0),
    "lcp_host_load1": ("Host load average over 1 minute.", "load1", 1.0),
    "lcp_host_load5": ("Host load average over 5 minutes.", "load5", 1.0),
    "lcp_host_load15": ("Host load average over 15 minutes.", "load15", 1.0),
    "lcp_host_memory_total_bytes": ("Host physical memory, in bytes.", "mem_total_bytes", 1.0),
    "lcp_host_memory_available_bytes": ("Host memory available without swapping, bytes.", "mem_available_bytes", 1.0),
    "lcp_host_memory_used_bytes": ("Host memory in use (total minus available), in bytes.", "mem_used_bytes", 1.0),
    "lcp_host_swap_total_bytes": ("Host swap space, in bytes.", "swap_total_bytes", 1.0),
    "lcp_host_swap_used_bytes": ("Host swap in use, in bytes.", "swap_used_bytes", 1.0),
}

_NVML_UP = ("lcp_nvml_up", "1 if NVML (the NVIDIA driver's management library) answers on this host, else 0.")
_GPU_UP = ("lcp_gpu_up", "1 if every reading of this GPU succeeded at the last tick, 0 if one failed (GPU lost...).")
_PROCESS_MEMORY = ("lcp_gpu_process_memory_used_bytes", "GPU memory used by one process on one GPU, in bytes.")


class GpuHostMetricsCollector(Collector):
    """Turns the latest :class:`Snapshot` into metric families at each scrape.

    ``provider``: returns the latest snapshot, or None before the first tick (then nothing is exported).
    ``dcgm_model_name_label``: also label GPU series with DCGM's ``modelName`` (fails promtool's camelCase lint).
    """

    def __init__(self, provider: Callable[[], Snapshot | None], *, dcgm_model_name_label: bool = False) -> None:
        self._provider = provider
        self._gpu_labels = ["gpu", "UUID", "device", "model_name", "Hostname"]
        if dcgm_model_name_label:
            self._gpu_labels.insert(3, "modelName")

    def describe(self) -> Iterable[Metric]:
        """The family names, without reading a snapshot (lets the registry check for clashes at registration)."""
        return list(self._families().values())

    def collect(self) -> Iterator[Metric]:
        try:
            snapshot = self._provider()
        except Exception:  # a scrape must not fail because the provider did
            log.exception("The metrics provider failed; this scrape has no GPU or host series")
            return
        if snapshot is None:
            return
        families = self._families()
        self._fill(families, snapshot)
        for family in families.values():
            if family.samples:
                yield family

    # -- building -----------------------------------------------------------------------------------------------

    def _families(self) -> dict[str, GaugeMetricFamily]:
        gpu = self._gpu_labels
        families = {name: GaugeMetricFamily(name, text, labels=gpu) for name, (text, _) in DCGM_GAUGES.items()}
        families.update({name: GaugeMetricFamily(name, text, labels=gpu) for name, (text, _) in _GPU_BYTES.items()})
        families[_GPU_UP[0]] = GaugeMetricFamily(*_GPU_UP, labels=gpu)
        families[_PROCESS_MEMORY[0]] = GaugeMetricFamily(*_PROCESS_MEMORY, labels=[*gpu, "pid"])
        families[_NVML_UP[0]] = GaugeMetricFamily(*_NVML_UP, labels=["Hostname"])
        families.update(
            {name: GaugeMetricFamily(name, text, labels=["Hostname"]) for name, (text, *_) in _HOST.items()}
        )
        return families

    def _gpu_label_values(self, sample: GpuSample, hostname: str) -> list[str]:
        values = {
            "gpu": str(sample.index),
            "UUID": sample.uuid,
            "device": f"nvidia{sample.index}",
            "modelName": sample.name,
            "model_name": sample.name,
            "Hostname": hostname,
        }
        return [values[label] for label in self._gpu_labels]

    def _fill(self, families: dict[str, GaugeMetricFamily], snapshot: Snapshot) -> None:
        hostname = snapshot.hostname
        families[_NVML_UP[0]].add_metric([hostname], 1.0 if snapshot.nvml_available else 0.0)
        for sample in snapshot.gpus:
            labels = self._gpu_label_values(sample, hostname)
            for table in (DCGM_GAUGES, _GPU_BYTES):
                for name, (_, read) in table.items():
                    value = read(sample)
                    if value is not None:
                        families[name].add_metric(labels, float(value))
            families[_GPU_UP[0]].add_metric(labels, 0.0 if sample.error else 1.0)
            for pid, used in sorted(sample.processes.items()):
                families[_PROCESS_MEMORY[0]].add_metric([*labels, str(pid)], float(used))
        host = snapshot.host
        if host is None:
            return
        for name, (_, field, scale) in _HOST.items():
            value = getattr(host, field)
            if value is not None:
                families[name].add_metric([hostname], float(value) * scale)
