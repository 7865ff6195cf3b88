"""The metrics service in ``serve``: every METRICS_INTERVAL_S it reads the GPUs, the host and every local worker,
feeds the sample store and the leak detectors, writes finished one-minute rollups, and pushes the tick to browsers.

Per tick, in this order (one thread; nothing here waits for a browser):

1. ``LocalCollector.tick()``: host CPU and memory, every GPU through NVML (said once and skipped without NVML);
2. each running worker's ``/control/stats`` (short timeout; a worker that does not answer is skipped this tick);
3. the leak detectors; a confirmed leak raises a ``leak`` alert, and restarts the worker when the deployment's
   ``leak_action`` is ``restart`` (the supervisor drains it first);
4. ``SampleStore.add`` (live views, history), then finished minutes are upserted into ``MetricRollup``;
5. the tick goes to the channel layer: group ``metrics.node.{id}`` (everything) and ``metrics.deployment.{id}`` (that
   worker's series). ``group_send`` is scheduled on the server's loop and never awaited here.

Every METRICS_DISCOVERY_INTERVAL_S the GPUs NVML finds are registered on the local node.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from controlplane import runtime
from controlplane.alerts import service as alerts
from controlplane.choices import DeploymentStatus, WorkerEventKind
from controlplane.models import Deployment, Node, WorkerEvent
from controlplane.services import audit
from controlplane.services.deployment_config import LeakAction
from controlplane.services.inventory import register_local_node, sync_local_gpus
from controlplane.stats.leak import LeakConfig, LeakState
from controlplane.workers import actions as worker_actions
from controlplane.workers.client import WorkerClient, WorkerError

from . import history
from .collectors import LocalCollector
from .collectors.samples import Snapshot
from .leakwatch import KINDS, LeakChange, LeakWatch, WatchedWorker
from .series import deployment_of, stats_fields
from .store import SampleStore, default_store

__all__ = [
    "MetricsService",
    "WorkerReading",
    "create_service",
    "current",
    "deployment_group",
    "node_group",
    "worker_series",
]

logger = logging.getLogger(__name__)


def node_group(node_id: int) -> str:
    return f"metrics.node.{node_id}"


def deployment_group(deployment_id: int) -> str:
    return f"metrics.deployment.{deployment_id}"


@dataclass
class WorkerReading:
    deployment_id: int
    name: str
    pid: int | None
    stats: dict
    series: dict[str, float] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)

    def watched(self) -> WatchedWorker:
        return WatchedWorker(self.deployment_id, self.pid, self.limits)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def worker_series(deployment_id: int, stats: dict, snapshot: Snapshot | None, pid: int | None, previous=None):
    """``{worker.{id}.{name}: value}`` from a worker's stats, its GPU memory from the snapshot (by pid), the mean
    batch size since ``previous`` stats (from the batch-size histogram), and expert activation shares."""
    p = f"worker.{deployment_id}."
    out: dict[str, float] = {}
    for name in stats_fields():  # the table's ``stats`` series: copied as they are from /control/stats
        value = _number(stats.get(name))
        if value is not None:
            out[p + name] = value
    if snapshot is not None and pid is not None and snapshot.gpus:
        used = [gpu.processes[pid] for gpu in snapshot.gpus if pid in gpu.processes]
        if used:
            out[p + "gpu_mem_bytes"] = float(sum(used))
    hist = stats.get("batch_size_histogram") or {}
    before = (previous or {}).get("batch_size_histogram") or {}
    try:
        delta = {float(k): float(v) - float(before.get(k, 0)) for k, v in hist.items()}
    except (TypeError, ValueError):
        delta = {}
    passes = sum(n for n in delta.values() if n > 0)
    if passes > 0:
        out[p + "batch_size_mean"] = sum(k * n for k, n in delta.items() if n > 0) / passes
    shares = (stats.get("expert_activation_shares") or {}).get("total") or []
    for index, share in enumerate(shares):
        value = _number(share)
        if value is not None:
            out[f"{p}expert.{index}.share"] = value
    return out


class MetricsService(runtime.ServiceThread):
    name = "metrics"

    def __init__(
        self,
        node: Node,
        *,
        collector: LocalCollector | None = None,
        store: SampleStore | None = None,
        interval_s: float | None = None,
        leak_config: LeakConfig | None = None,
        publish: Callable[[dict], None] | None = None,
        stats_timeout_s: float | None = None,
    ) -> None:
        super().__init__()
        self.node = node
        self.collector = collector if collector is not None else LocalCollector(hostname=node.hostname)
        self.store = store if store is not None else default_store()
        self.interval_s = interval_s if interval_s is not None else settings.METRICS_INTERVAL_S
        self.idle_s = self.interval_s
        self.leaks = LeakWatch(leak_config)
        self._publish = publish if publish is not None else self.channel_publish
        self.stats_timeout_s = stats_timeout_s or max(0.5, min(2.0, 0.8 * self.interval_s))
        self.workers: dict[int, WorkerReading] = {}
        self.unreachable: dict[int, str] = {}
        """Deployments whose worker should answer but did not at the last tick (id -> name)."""
        self.seq = 0
        self.tick_cpu_s = 0.0
        self.last_snapshot: Snapshot | None = None
        self._clients: dict[int, tuple[str, WorkerClient]] = {}
        self._rows: list[tuple[int, str, str, int | None]] = []
        self._last_discovery = float("-inf")
        self._last_seen = float("-inf")
        self._lock = threading.Lock()

    # --- the loop ----------------------------------------------------------------------------------------------------
    def start(self, loop=None) -> None:
        global _current
        _current = self
        super().start(loop)

    def step(self) -> bool:
        started = time.monotonic()
        self.tick()
        self.idle_s = max(0.0, self.interval_s - (time.monotonic() - started))
        return False

    def tick(self) -> dict:
        """One round; returns what was published."""
        cpu = time.thread_time()
        snapshot = self.collector.tick()
        self.last_snapshot = snapshot
        ts = snapshot.ts
        series = snapshot.series()
        workers = self.read_workers(snapshot)
        for reading in workers:
            series.update(reading.series)
        changes = self.leaks.update(ts, series, [reading.watched() for reading in workers])
        self.store.add(ts, series)
        with self._lock:
            self.workers = {reading.deployment_id: reading for reading in workers}
        for change in changes:
            try:
                self.on_leak_change(change)
            except Exception:
                logger.exception("handling a leak state change of %s failed", change.series)
        self.persist()
        self.maintain_inventory()
        self.seq += 1
        payload = {
            "seq": self.seq,
            "ts": ts,
            "node": self.node.pk,
            "series": series,
            "leaks": self.leaks.statuses(),
            "nvml": {"available": snapshot.nvml_available, "reason": snapshot.nvml_reason},
            "workers": {str(r.deployment_id): r.name for r in workers},
        }
        try:
            self._publish(payload)
        except Exception:
            logger.exception("publishing metrics failed")
        self.tick_cpu_s = time.thread_time() - cpu
        return payload

    def on_stop(self) -> None:
        global _current
        try:
            history.persist(self.node, self.store.take_all())
        except Exception:
            logger.exception("writing the last metric rollups failed")
        for _, client in self._clients.values():
            client.close()
        self.collector.close()
        if _current is self:
            _current = None

    # --- workers -----------------------------------------------------------------------------------------------------
    def read_workers(self, snapshot: Snapshot) -> list[WorkerReading]:
        try:
            rows = list(
                Deployment.objects.filter(
                    node_id=self.node.pk,
                    status__in=[DeploymentStatus.RUNNING, DeploymentStatus.DEGRADED],
                )
                .exclude(worker_url="")
                .values_list("pk", "name", "worker_url", "worker_pid")
            )
            self._rows = rows
        except DatabaseError:  # the database is away: keep watching the workers we knew of
            logger.warning("listing this node's workers failed; using the last list", exc_info=True)
            rows = self._rows
        host_total = float(snapshot.host.mem_total_bytes) if snapshot.host else None
        readings = []
        unreachable: dict[int, str] = {}
        for pk, name, url, pid in rows:
            client = self._client(pk, url)
            try:
                stats = client.stats(timeout=self.stats_timeout_s)
            except (WorkerError, OSError) as exc:
                logger.debug("no stats from %s this tick: %s", name, exc)
                unreachable[pk] = name
                continue
            except Exception:
                logger.exception("reading stats of %s failed", name)
                unreachable[pk] = name
                continue
            previous = self.workers.get(pk)
            series = worker_series(pk, stats, snapshot, pid, previous.stats if previous else None)
            readings.append(WorkerReading(pk, name, pid, stats, series, self._limits(stats, snapshot, pid, host_total)))
        for pk in [pk for pk in self._clients if pk not in {row[0] for row in rows}]:
            self._clients.pop(pk)[1].close()
        self.unreachable = unreachable
        return readings

    def _client(self, pk: int, url: str) -> WorkerClient:
        known = self._clients.get(pk)
        if known is None or known[0] != url:
            if known is not None:
                known[1].close()
            known = self._clients[pk] = (url, WorkerClient.for_deployment(pk, url))
        return known[1]

    @staticmethod
    def _limits(stats: dict, snapshot: Snapshot, pid: int | None, host_total: float | None) -> dict[str, float]:
        limits: dict[str, float] = {}
        gpu_total = sum(
            float(gpu.mem_total_bytes or 0) for gpu in snapshot.gpus if pid is not None and pid in gpu.processes
        )
        device = str(stats.get("device") or "")
        if host_total:
            limits["rss_bytes"] = host_total
            limits["torch_allocated_bytes"] = host_total
        if device.startswith("cuda"):
            index = int(device.partition(":")[2] or 0)
            totals = {gpu.index: gpu.mem_total_bytes for gpu in snapshot.gpus}
            total = totals.get(index)
            if total:
                limits["torch_allocated_bytes"] = float(total)
        if gpu_total:
            limits["gpu_mem_bytes"] = gpu_total
        return limits

    def worker_readings(self) -> list[WorkerReading]:
        with self._lock:
            return list(self.workers.values())

    # --- leaks -------------------------------------------------------------------------------------------------------
    def on_leak_change(self, change: LeakChange) -> None:
        deployment = Deployment.objects.filter(pk=change.deployment_id).select_related("current_revision").first()
        if deployment is None:
            return
        status = change.status
        label = KINDS[change.kind]
        if status.state == LeakState.LEAK:
            values = {
                "growth_bytes_per_min": round(status.slope_bytes_per_min),
                "level_bytes": status.level_bytes,
                "limit_bytes": status.limit_bytes,
                "time_to_oom_s": status.time_to_oom_s,
                "window_s": status.window_s,
                "p_value": status.p_value,
            }
            alerts.signal(
                "leak",
                deployment,
                change.kind,
                True,
                title=f"Memory leak in {deployment.name}: {label} grows {status.slope_bytes_per_min / 1e6:.1f} MB/min",
                summary=status.reason,
                values={k: v for k, v in values.items() if v is not None},
                series=self.chart_series(change.series),
                series_label=f"{label}, bytes",
                threshold=status.limit_bytes,
            )
            config = deployment.current_revision.config if deployment.current_revision else {}
            if config.get("leak_action") == LeakAction.RESTART:
                message = f"{label} leaking {status.slope_bytes_per_min / 1e6:.1f} MB/min: draining and restarting"
                WorkerEvent.objects.create(
                    deployment=deployment, kind=WorkerEventKind.LEAK_RESTART, message=message[:500], details=values
                )
                try:
                    # The detector keeps its verdict until the new process (a new pid) replaces this one.
                    worker_actions.request_restart(audit.SYSTEM, deployment)
                except Exception:
                    logger.exception("restarting %s for a leak failed", deployment.name)
        elif change.before == LeakState.LEAK:
            alerts.signal("leak", deployment, change.kind, False, summary=status.reason)

    def chart_series(self, name: str, points: int = 240) -> list[tuple[str, float]]:
        """The series over the live window, thinned to about ``points`` points, for the alert's chart."""
        raw = self.store.raw([name], float("-inf"), float("inf"))[name]
        stride = max(1, len(raw) // points)
        return [(datetime.fromtimestamp(t, tz=UTC).isoformat(), v) for t, v in raw[::stride]]

    def leak_statuses(self) -> list[dict]:
        return self.leaks.statuses()

    # --- persistence and inventory -----------------------------------------------------------------------------------
    def persist(self) -> None:
        closed = self.store.take_closed()
        if not closed:
            return
        try:
            history.persist(self.node, closed)
        except DatabaseError:
            logger.exception("writing %d metric rollups failed; kept for the next tick", len(closed))
            self.store.give_back(closed)

    def maintain_inventory(self) -> None:
        now = time.monotonic()
        if now - self._last_seen >= 30:
            self._last_seen = now
            try:
                Node.objects.filter(pk=self.node.pk).update(last_seen=timezone.now())
            except DatabaseError:
                logger.warning("marking the node as seen failed", exc_info=True)
        if now - self._last_discovery >= settings.METRICS_DISCOVERY_INTERVAL_S:
            self._last_discovery = now
            try:
                sync_local_gpus(self.node, self.collector.nvml.discover())
            except Exception:
                logger.exception("registering the GPUs NVML found failed")

    # --- publishing --------------------------------------------------------------------------------------------------
    def channel_publish(self, payload: dict) -> None:
        """Hand the tick to the channel layer on the server's loop (no loop: no browsers to push to)."""
        if runtime.main_loop() is None:
            return
        layer = get_channel_layer()
        if layer is None:
            return
        messages = [(node_group(self.node.pk), payload)]
        by_deployment: dict[int, dict[str, float]] = {int(pk): {} for pk in payload["workers"]}
        for name, value in payload["series"].items():
            owner = deployment_of(name)
            if owner in by_deployment:
                by_deployment[owner][name] = value
        for deployment_id, series in by_deployment.items():
            part = dict(payload)
            part["series"] = series
            part["leaks"] = [row for row in payload["leaks"] if row["deployment"] == deployment_id]
            messages.append((deployment_group(deployment_id), part))
        runtime.call_in_loop(_send_all(layer, messages))


async def _send_all(layer, messages: list[tuple[str, dict]]) -> None:
    published = time.time()
    for group, payload in messages:
        try:
            await layer.group_send(group, {"type": "metrics.sample", "published": published, **payload})
        except Exception:
            logger.exception("sending metrics to %s failed", group)


_current: MetricsService | None = None


def current() -> MetricsService | None:
    """The metrics service running in this process (None outside ``serve`` or with METRICS_ENABLED off)."""
    return _current


def create_service() -> MetricsService | None:
    """The service for ``serve`` (registered in ``apps.py``), or None with METRICS_ENABLED off."""
    if not settings.METRICS_ENABLED:
        return None
    leak = LeakConfig(**json.loads(settings.METRICS_LEAK_CONFIG)) if settings.METRICS_LEAK_CONFIG else None
    return MetricsService(register_local_node(), leak_config=leak)
