"""Leak detectors on the workers' memory series, fed by the collector each tick (plain Python, no Django).

One :class:`~controlplane.stats.leak.LeakDetector` per (deployment, memory kind): the worker's RSS, its torch
allocated memory, and its GPU memory as NVML sees it (per process). Memory explained by load is taken out with the
worker's KV-cache bytes (one byte of memory per byte of KV cache). A detector is reset when the worker's pid changes
(a restart frees everything). ``update`` returns the state changes; the collector turns them into alerts and, when
the deployment's policy says so, a restart (``controlplane/monitoring/service.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from controlplane.stats.leak import LeakConfig, LeakDetector, LeakState, LeakStatus

__all__ = ["KINDS", "LeakChange", "LeakWatch", "WatchedWorker"]

KINDS: dict[str, str] = {
    "rss_bytes": "resident memory (RSS)",
    "torch_allocated_bytes": "torch allocated memory",
    "gpu_mem_bytes": "GPU memory (NVML, per process)",
}
"""Memory series watched per worker (``worker.{deployment id}.{kind}``) and how people call them."""

LOAD_SERIES = "kv_cache_bytes"


@dataclass(frozen=True)
class WatchedWorker:
    """What the watch needs to know of one worker at this tick."""

    deployment_id: int
    pid: int | None
    limits: dict[str, float] = field(default_factory=dict)
    """Memory limit per kind (host memory for RSS and CPU tensors, the GPU's memory for GPU series)."""


@dataclass(frozen=True)
class LeakChange:
    deployment_id: int
    kind: str
    before: LeakState
    status: LeakStatus

    @property
    def series(self) -> str:
        return f"worker.{self.deployment_id}.{self.kind}"


@dataclass
class _Entry:
    detector: LeakDetector
    pid: int | None


class LeakWatch:
    def __init__(self, config: LeakConfig | None = None) -> None:
        self.config = config or LeakConfig()
        self._entries: dict[tuple[int, str], _Entry] = {}

    def update(self, ts: float, series: dict[str, float], workers: Iterable[WatchedWorker]) -> list[LeakChange]:
        changes: list[LeakChange] = []
        seen: set[tuple[int, str]] = set()
        for worker in workers:
            prefix = f"worker.{worker.deployment_id}."
            load = series.get(prefix + LOAD_SERIES)
            for kind in KINDS:
                value = series.get(prefix + kind)
                if value is None:
                    continue
                key = (worker.deployment_id, kind)
                seen.add(key)
                entry = self._entries.get(key)
                if entry is None or entry.pid != worker.pid:
                    before = entry.detector.status.state if entry else LeakState.OK
                    entry = self._entries[key] = _Entry(LeakDetector(self.config), worker.pid)
                    if before != LeakState.OK:  # a new process: the old one's leak is gone with it
                        changes.append(LeakChange(worker.deployment_id, kind, before, entry.detector.status))
                detector = entry.detector
                detector.limit = worker.limits.get(kind)
                before = detector.status.state
                try:
                    status = detector.update(ts, value, load)
                except ValueError:  # a clock step backwards: start again rather than stop watching
                    detector.reset()
                    status = detector.update(ts, value, load)
                if status.state != before:
                    changes.append(LeakChange(worker.deployment_id, kind, before, status))
        for key in [key for key in self._entries if key not in seen]:
            entry = self._entries.pop(key)
            if entry.detector.status.state != LeakState.OK:
                cleared = LeakStatus(state=LeakState.OK, reason="the worker is gone")
                changes.append(LeakChange(key[0], key[1], entry.detector.status.state, cleared))
        return changes

    def reset(self, deployment_id: int) -> None:
        """Forget a deployment's history (its worker is being restarted on purpose)."""
        for key in [key for key in self._entries if key[0] == deployment_id]:
            self._entries[key].detector.reset()

    def statuses(self) -> list[dict]:
        """One JSON-ready row per watched series, for the dashboard, the API and Prometheus."""
        rows = []
        for (deployment_id, kind), entry in sorted(self._entries.items()):
            status = entry.detector.status
            rows.append(
                {
                    "deployment": deployment_id,
                    "kind": kind,
                    "series": f"worker.{deployment_id}.{kind}",
                    "label": KINDS[kind],
                    "state": str(status.state),
                    "ready": status.ready,
                    "reason": status.reason,
                    "slope_bytes_per_s": status.slope_bytes_per_s,
                    "time_to_oom_s": status.time_to_oom_s,
                    "level_bytes": status.level_bytes,
                    "limit_bytes": status.limit_bytes,
                    "window_s": status.window_s,
                    "p_value": status.p_value,
                }
            )
        return rows
