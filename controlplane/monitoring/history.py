"""Metric history: writing the store's one-minute rollups to the database, pruning them, and answering history
queries (series, range, step) from raw samples in memory or from rollups.

A query with a step under 60 s is answered from raw samples, so its range must lie within the live window; a step
of 60 s or more is answered from rollups (the database, plus the minutes the store still holds). Every point is
``[t, mean, min, max]`` for the bucket of ``step`` seconds starting at ``t``; empty buckets are left out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from controlplane.models import MetricRollup, Node
from controlplane.services.errors import InvalidInput

from . import series as table
from .store import Rollup, SampleStore

__all__ = ["MAX_POINTS", "MAX_SERIES", "HistoryQuery", "parse_query", "persist", "prune", "run_query", "series_names"]

MAX_POINTS = 5000
"""Most points one query may return per series."""
MAX_SERIES = 50
ROLLUP_S = 60


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


# --- writing and pruning ---------------------------------------------------------------------------------------------
def persist(node: Node | int, rollups: list[Rollup]) -> int:
    """Upsert rollups (a minute written twice, e.g. partly before a restart, keeps the figures written last)."""
    if not rollups:
        return 0
    node_id = node if isinstance(node, int) else node.pk
    rows = [
        MetricRollup(
            node_id=node_id,
            series=r.series[:200],
            minute=_dt(r.minute),
            min=r.min,
            mean=r.mean,
            max=r.max,
            count=r.count,
        )
        for r in rollups
    ]
    with transaction.atomic():
        MetricRollup.objects.bulk_create(
            rows,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["node", "series", "minute"],
            update_fields=["min", "mean", "max", "count"],
        )
    return len(rows)


def prune(now: datetime | None = None) -> dict:
    """Delete rollups older than METRICS_RETENTION_DAYS (the ``prune_metrics`` job)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.METRICS_RETENTION_DAYS)
    deleted, _ = MetricRollup.objects.filter(minute__lt=cutoff).delete()
    return {"deleted": deleted, "cutoff": cutoff.isoformat()}


# --- queries ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HistoryQuery:
    node: Node
    series: tuple[str, ...]
    start: float
    end: float
    step: float

    @property
    def source(self) -> str:
        return "raw" if self.step < ROLLUP_S else "rollups"


def series_names(node: Node, store: SampleStore | None) -> list[str]:
    """Series with data on the node: in the store (local node) or in the database."""
    names = set(MetricRollup.objects.filter(node=node).values_list("series", flat=True).distinct())
    if store is not None and node.is_local:
        names.update(store.names())
    return sorted(names)


def _parse_time(name: str, raw: str | None, default: float, now: float) -> float:
    """Seconds since the epoch, an ISO 8601 time, or a negative number of seconds relative to now (``-3600``)."""
    if raw is None or raw == "":
        return default
    try:
        number = float(raw)
    except ValueError:
        try:
            parsed = parse_datetime(raw)
        except ValueError:  # well-formed but impossible: month 13
            parsed = None
        if parsed is None:
            raise InvalidInput.field(
                name, "must be seconds since the epoch, an ISO 8601 time, or negative seconds from now"
            ) from None
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, UTC)
        return parsed.timestamp()
    if not math.isfinite(number):
        raise InvalidInput.field(name, "must be a finite number")
    return now + number if number <= 0 else number


def parse_query(params, *, node: Node, store: SampleStore | None, now: float | None = None) -> HistoryQuery:
    """Validate a query's parameters (``series`` repeated or comma-separated, ``start``, ``end``, ``step``); every
    problem is an :class:`InvalidInput` naming the parameter. A series name must match the table of series
    (``series.py``) and have data on the node."""
    now = time.time() if now is None else now
    names: list[str] = []
    for value in params.getlist("series") if hasattr(params, "getlist") else params.get("series", []):
        names.extend(part.strip() for part in value.split(",") if part.strip())
    names = list(dict.fromkeys(names))
    if not names:
        raise InvalidInput.field("series", "give at least one series name (GET /api/v1/metrics/series/ lists them)")
    if len(names) > MAX_SERIES:
        raise InvalidInput.field("series", f"at most {MAX_SERIES} series per query, not {len(names)}")
    undeclared = [name for name in names if table.match(name) is None]
    if undeclared:
        raise InvalidInput.field(
            "series",
            f"unknown series names, not in the table of series (docs/monitoring.md): {', '.join(undeclared[:10])}",
        )
    known = set(store.names()) if store is not None and node.is_local else set()
    missing = [name for name in names if name not in known]
    if missing:  # only the names asked for are looked up (the table holds every series for every minute)
        known |= set(
            MetricRollup.objects.filter(node=node, series__in=missing).values_list("series", flat=True).distinct()
        )
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidInput.field("series", f"unknown series on node {node.hostname}: {', '.join(unknown[:10])}")
    end = _parse_time("end", params.get("end"), now, now)
    start = _parse_time("start", params.get("start"), end - 3600, now)
    if start >= end:
        raise InvalidInput.field("start", "must be before end")
    span = end - start
    raw_step = params.get("step")
    step: float
    if raw_step in (None, ""):
        step = max(ROLLUP_S, math.ceil(span / 500 / ROLLUP_S) * ROLLUP_S)
    else:
        try:
            step = float(raw_step)
        except ValueError:
            raise InvalidInput.field("step", "must be a number of seconds") from None
        if not math.isfinite(step) or step <= 0:
            raise InvalidInput.field("step", "must be a positive number of seconds")
    points = span / step
    if points > MAX_POINTS:
        raise InvalidInput.field(
            "step",
            f"{step:g} s over {span:g} s would return {points:,.0f} points per series; the most is {MAX_POINTS} "
            f"(use a step of at least {math.ceil(span / MAX_POINTS)} s)",
        )
    if step < ROLLUP_S:
        if not node.is_local or store is None:
            raise InvalidInput.field("step", f"raw samples are only kept on the node itself; use a step >= {ROLLUP_S}")
        horizon = now - settings.METRICS_LIVE_WINDOW_S
        if start < horizon:
            raise InvalidInput.field(
                "step",
                f"steps under {ROLLUP_S} s are answered from raw samples, kept for the last "
                f"{settings.METRICS_LIVE_WINDOW_S} s only; start later or use a step >= {ROLLUP_S}",
            )
    return HistoryQuery(node=node, series=tuple(names), start=start, end=end, step=step)


def _bucket(ts: float, start: float, step: float) -> float:
    return start + math.floor((ts - start) / step) * step


def _aggregate(items: Iterable[tuple[float, float, float, float, int]], start: float, step: float) -> list[list]:
    """``(ts, min, total, max, count)`` items -> ``[[t, mean, min, max], ...]`` per bucket, in time order."""
    buckets: dict[float, list[float]] = {}
    for ts, low, total, high, count in items:
        key = _bucket(ts, start, step)
        acc = buckets.get(key)
        if acc is None:
            buckets[key] = [low, total, high, count]
        else:
            acc[0] = min(acc[0], low)
            acc[1] += total
            acc[2] = max(acc[2], high)
            acc[3] += count
    return [[round(t, 3), acc[1] / acc[3], acc[0], acc[2]] for t, acc in sorted(buckets.items()) if acc[3] > 0]


def run_query(query: HistoryQuery, store: SampleStore | None) -> dict:
    """Answer a validated query: ``{"start", "end", "step", "source", "series": {name: [[t, mean, min, max]]}}``."""
    out: dict[str, list[list]] = {}
    if query.source == "raw":
        raw = store.raw(query.series, query.start, query.end) if store is not None else {}
        for name in query.series:
            out[name] = _aggregate(((t, v, v, v, 1) for t, v in raw.get(name, [])), query.start, query.step)
    else:
        first_minute = math.floor(query.start / ROLLUP_S) * ROLLUP_S
        by_minute: dict[str, dict[float, tuple[float, float, float, float, int]]] = {n: {} for n in query.series}
        rows = MetricRollup.objects.filter(
            node=query.node, series__in=query.series, minute__gte=_dt(first_minute), minute__lt=_dt(query.end)
        ).values_list("series", "minute", "min", "mean", "max", "count")
        for name, minute, low, mean, high, count in rows.iterator():
            ts = minute.timestamp()
            by_minute[name][ts] = (max(ts, query.start), low, mean * count, high, count)
        if store is not None and query.node.is_local:
            for r in store.rollups(query.series, first_minute, query.end):
                # The store's figures are the newer ones for a minute also in the database (a minute in progress).
                by_minute[r.series][r.minute] = (max(r.minute, query.start), r.min, r.total, r.max, r.count)
        for name in query.series:
            out[name] = _aggregate(by_minute[name].values(), query.start, query.step)
    return {
        "node": query.node.pk,
        "start": query.start,
        "end": query.end,
        "step": query.step,
        "source": query.source,
        "series": out,
    }
