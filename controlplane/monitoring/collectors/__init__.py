"""Metric collectors: NVML (per GPU), host (psutil), one process (psutil). Plain Python, no Django.

Typical use from a 1 Hz loop::

    collector = LocalCollector()            # real pynvml; says once if NVML is unavailable
    snapshot = collector.tick()             # Snapshot(host=HostSample, gpus=(GpuSample, ...), ...)
    store.add(snapshot.ts, snapshot.series())   # {"gpu.0.util": 37.0, "host.cpu_pct": 12.5, ...}

Series names and units: docs/collectors.md.
"""

from .host import HostCollector, cpu_busy_pct, local_node_info
from .local import LocalCollector
from .nvml import DEFAULT_RETRY_INTERVAL_S, NvmlCollector, format_cuda_version
from .process import ProcessCollector
from .samples import (
    GpuInfo,
    GpuSample,
    HostSample,
    NodeInfo,
    NvmlInventory,
    ProcessSample,
    Snapshot,
    merge_series,
)

__all__ = [
    "DEFAULT_RETRY_INTERVAL_S",
    "GpuInfo",
    "GpuSample",
    "HostCollector",
    "HostSample",
    "LocalCollector",
    "NodeInfo",
    "NvmlCollector",
    "NvmlInventory",
    "ProcessCollector",
    "ProcessSample",
    "Snapshot",
    "cpu_busy_pct",
    "format_cuda_version",
    "local_node_info",
    "merge_series",
]
