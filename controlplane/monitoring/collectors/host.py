"""The host's CPU and memory (psutil), and the facts needed to register the local machine as a node."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from .samples import HostSample, NodeInfo

__all__ = ["HostCollector", "cpu_busy_pct", "local_node_info"]


def _busy_and_total(times: Any) -> tuple[float, float]:
    """psutil's own arithmetic: guest time is already inside user time on Linux; idle includes I/O wait."""
    total = sum(times)
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


def cpu_busy_pct(before: Any, after: Any) -> float | None:
    """Busy share (0-100) of all CPUs between two ``psutil.cpu_times()`` readings; None if no time passed."""
    busy_before, total_before = _busy_and_total(before)
    busy_after, total_after = _busy_and_total(after)
    elapsed = total_after - total_before
    if elapsed <= 0:
        return None
    return min(100.0, max(0.0, 100.0 * (busy_after - busy_before) / elapsed))


class HostCollector:
    """Host CPU, load and memory; one ``collect()`` per tick, never blocks.

    CPU percent is computed from this collector's own previous ``cpu_times()`` reading, so it is not disturbed by
    other code in the process calling ``psutil.cpu_percent()`` (whose state is module-wide).
    """

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._last_times = psutil.cpu_times()
        self._cpu_count = psutil.cpu_count(logical=True) or os.cpu_count() or 1

    def collect(self) -> HostSample:
        ts = self._wall_clock()
        with self._lock:
            times = psutil.cpu_times()
            cpu_pct = cpu_busy_pct(self._last_times, times)
            self._last_times = times
        load1: float | None
        load5: float | None
        load15: float | None
        try:
            load1, load5, load15 = psutil.getloadavg()
        except (OSError, AttributeError):
            load1 = load5 = load15 = None
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        return HostSample(
            ts=ts,
            cpu_pct=cpu_pct,
            cpu_count=self._cpu_count,
            load1=load1,
            load5=load5,
            load15=load15,
            mem_total_bytes=int(memory.total),
            mem_available_bytes=int(memory.available),
            mem_used_bytes=int(memory.total - memory.available),
            swap_total_bytes=int(swap.total),
            swap_used_bytes=int(swap.used),
        )


def local_node_info() -> NodeInfo:
    """This machine's hostname, logical CPU count and physical memory, for the inventory's local node.

    In a container these are the host's figures (psutil reads /proc), not the container's cgroup limits.
    """
    return NodeInfo(
        hostname=socket.gethostname(),
        cpu_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        memory_bytes=int(psutil.virtual_memory().total),
    )
