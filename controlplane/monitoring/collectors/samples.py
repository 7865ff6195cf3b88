"""What the collectors return: plain dataclasses, a JSON-ready ``to_dict()`` and a flat ``series()`` view.

Series names are stable and documented in ``docs/collectors.md``; the sample store and the charts use them as keys.
A field that could not be measured is ``None`` in the sample and absent from ``series()``: nothing is invented.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "GpuInfo",
    "GpuSample",
    "HostSample",
    "NodeInfo",
    "NvmlInventory",
    "ProcessSample",
    "Snapshot",
    "merge_series",
]


class _HasSeries(Protocol):
    def series(self) -> dict[str, float]: ...


def _put(out: dict[str, float], name: str, value: float | None) -> None:
    if value is not None:
        out[name] = float(value)


def _plain_dict(obj: Any) -> dict[str, Any]:
    """Shallow field dict (``dataclasses.asdict`` deep-copies, which is slower and not needed here)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one instant, as NVML reported it. Units are in the field names; percentages are 0-100."""

    index: int
    uuid: str
    name: str
    ts: float
    """Wall-clock time of the reading, seconds since the epoch."""
    util_gpu_pct: float | None = None
    util_mem_pct: float | None = None
    """Memory-controller busy time (what nvidia-smi calls "memory utilisation"), not the share of memory used."""
    mem_total_bytes: int | None = None
    mem_used_bytes: int | None = None
    mem_free_bytes: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    processes: dict[int, int] = field(default_factory=dict)
    """pid -> GPU memory used in bytes (compute and graphics processes; a pid in both counts once)."""
    error: str | None = None
    """Set when a call for this GPU failed (other than "not supported"); the fields it would have filled are None."""

    def to_dict(self) -> dict[str, Any]:
        data = _plain_dict(self)
        data["processes"] = {str(pid): used for pid, used in self.processes.items()}
        return data

    def series(self) -> dict[str, float]:
        p = f"gpu.{self.index}."
        out: dict[str, float] = {}
        _put(out, p + "util", self.util_gpu_pct)
        _put(out, p + "mem_util", self.util_mem_pct)
        _put(out, p + "mem_total_bytes", self.mem_total_bytes)
        _put(out, p + "mem_used_bytes", self.mem_used_bytes)
        _put(out, p + "mem_free_bytes", self.mem_free_bytes)
        _put(out, p + "temperature_c", self.temperature_c)
        _put(out, p + "power_w", self.power_w)
        _put(out, p + "power_limit_w", self.power_limit_w)
        _put(out, p + "sm_clock_mhz", self.sm_clock_mhz)
        _put(out, p + "mem_clock_mhz", self.mem_clock_mhz)
        for pid, used in self.processes.items():
            out[f"{p}proc.{pid}.mem_used_bytes"] = float(used)
        return out


@dataclass(frozen=True, slots=True)
class HostSample:
    """The host's CPU and memory at one instant (psutil)."""

    ts: float
    cpu_pct: float | None
    """Busy share of all logical CPUs since the previous reading, 0-100; None on the very first reading."""
    cpu_count: int
    load1: float | None
    load5: float | None
    load15: float | None
    mem_total_bytes: int
    mem_available_bytes: int
    mem_used_bytes: int
    """``total - available``: memory that cannot be handed out without swapping or reclaiming (as ``free`` shows)."""
    swap_total_bytes: int
    swap_used_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return _plain_dict(self)

    def series(self) -> dict[str, float]:
        out: dict[str, float] = {}
        _put(out, "host.cpu_pct", self.cpu_pct)
        _put(out, "host.cpu_count", self.cpu_count)
        _put(out, "host.load1", self.load1)
        _put(out, "host.load5", self.load5)
        _put(out, "host.load15", self.load15)
        _put(out, "host.mem_total_bytes", self.mem_total_bytes)
        _put(out, "host.mem_available_bytes", self.mem_available_bytes)
        _put(out, "host.mem_used_bytes", self.mem_used_bytes)
        _put(out, "host.swap_total_bytes", self.swap_total_bytes)
        _put(out, "host.swap_used_bytes", self.swap_used_bytes)
        return out


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One process at one instant. ``gone`` is True once the process has exited (or its pid was reused)."""

    pid: int
    ts: float
    gone: bool = False
    rss_bytes: int | None = None
    vms_bytes: int | None = None
    cpu_pct: float | None = None
    """Since the previous reading; 100 means one full CPU, so a busy multi-threaded process can exceed 100."""
    num_threads: int | None = None
    num_fds: int | None = None
    """Open file descriptors (Unix only); None where not permitted or not available."""
    error: str | None = None
    """Why fields are missing when the process is alive but could not be read (e.g. access denied)."""

    def to_dict(self) -> dict[str, Any]:
        return _plain_dict(self)

    def series(self, prefix: str | None = None) -> dict[str, float]:
        """``{prefix}.rss_bytes`` etc.; the prefix defaults to ``proc.{pid}`` (callers may pass e.g. ``worker.3``)."""
        p = (prefix if prefix is not None else f"proc.{self.pid}") + "."
        out: dict[str, float] = {}
        if self.gone:
            return out
        _put(out, p + "rss_bytes", self.rss_bytes)
        _put(out, p + "vms_bytes", self.vms_bytes)
        _put(out, p + "cpu_pct", self.cpu_pct)
        _put(out, p + "num_threads", self.num_threads)
        _put(out, p + "num_fds", self.num_fds)
        return out


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """Static facts about one GPU, for the inventory (field names match ``controlplane.models.GPU``)."""

    index: int
    uuid: str
    name: str
    memory_total_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return _plain_dict(self)


@dataclass(frozen=True, slots=True)
class NvmlInventory:
    """What NVML says about this machine's GPUs. With NVML unavailable: ``available`` False, ``reason`` says why."""

    available: bool
    reason: str | None = None
    driver_version: str = ""
    cuda_version: str = ""
    """CUDA version the driver supports, e.g. "12.4" (from ``nvmlSystemGetCudaDriverVersion``)."""
    gpus: tuple[GpuInfo, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = _plain_dict(self)
        data["gpus"] = [gpu.to_dict() for gpu in self.gpus]
        return data


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """The local machine, for registering it as a node (field names match ``controlplane.models.Node``)."""

    hostname: str
    cpu_cores: int
    memory_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return _plain_dict(self)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one tick of :class:`LocalCollector` read. ``gpus`` is empty when NVML is unavailable."""

    ts: float
    hostname: str
    host: HostSample | None
    gpus: tuple[GpuSample, ...] = ()
    nvml_available: bool = False
    nvml_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "hostname": self.hostname,
            "host": self.host.to_dict() if self.host is not None else None,
            "gpus": [gpu.to_dict() for gpu in self.gpus],
            "nvml_available": self.nvml_available,
            "nvml_reason": self.nvml_reason,
        }

    def series(self) -> dict[str, float]:
        parts: list[_HasSeries] = list(self.gpus)
        if self.host is not None:
            parts.append(self.host)
        return merge_series(parts)


def merge_series(samples: Iterable[_HasSeries]) -> dict[str, float]:
    """One flat ``{series_name: value}`` dict from several samples (names never collide across sample kinds)."""
    out: dict[str, float] = {}
    for sample in samples:
        out.update(sample.series())
    return out
