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

from . import series
from .collectors.samples import GpuSample, Snapshot
from .families import TableFamilies

__all__ = ["DCGM_GAUGES", "STATUS_FAMILIES", "GpuHostMetricsCollector"]

log = logging.getLogger(__name__)

DCGM_GAUGES: dict[str, str] = {
    export.name: export.help for _, export in series.exports("gpu") if export.name.startswith("DCGM_")
}
"""DCGM exporter family name -> help text, as the table of series declares them."""

_NVML_UP = ("lcp_nvml_up", "1 if NVML (the NVIDIA driver's management library) answers on this host, else 0.")
_GPU_UP = ("lcp_gpu_up", "1 if every reading of this GPU succeeded at the last tick, 0 if one failed (GPU lost...).")
STATUS_FAMILIES = (_NVML_UP[0], _GPU_UP[0])
"""Families here that are not series of the table: whether NVML and each GPU answered."""


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
        return list(self._metrics(self._families()))

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
        for family in self._metrics(families):
            if family.samples:
                yield family

    # -- building -----------------------------------------------------------------------------------------------

    @staticmethod
    def _metrics(families: dict) -> Iterator[Metric]:
        for family in families.values():
            if isinstance(family, TableFamilies):
                yield from family
            else:
                yield family

    def _families(self) -> dict:
        """The table's GPU and host families (filled from the snapshot's series), then the status families."""
        return {
            "gpu": TableFamilies("gpu", self._gpu_labels),
            "host": TableFamilies("host", ["Hostname"]),
            _GPU_UP[0]: GaugeMetricFamily(*_GPU_UP, labels=self._gpu_labels),
            _NVML_UP[0]: GaugeMetricFamily(*_NVML_UP, labels=["Hostname"]),
        }

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

    def _fill(self, families: dict, snapshot: Snapshot) -> None:
        hostname = snapshot.hostname
        families[_NVML_UP[0]].add_metric([hostname], 1.0 if snapshot.nvml_available else 0.0)
        for sample in snapshot.gpus:
            labels = self._gpu_label_values(sample, hostname)
            families["gpu"].add(sample.series(), labels)
            families[_GPU_UP[0]].add_metric(labels, 0.0 if sample.error else 1.0)
        if snapshot.host is not None:
            families["host"].add(snapshot.host.series(), [hostname])
