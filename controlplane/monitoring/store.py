"""The sample store: the last ``live_window_s`` of raw samples in memory, and one-minute rollups on their way to the
database. Plain Python, thread-safe, no Django.

The collector calls ``add(ts, {series: value})`` once per tick. Readers:

* live views: ``frames(since)`` (the raw ticks, for a websocket's backfill) and ``latest()``;
* history: ``raw(names, start, end)`` within the live window, ``rollups(names, start, end)`` for the minutes not yet
  written to the database (the one in progress included);
* persistence: ``take_closed()`` hands over the finished minutes once (the collector writes them with an upsert).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["Rollup", "SampleStore", "default_store", "minute_of"]

log = logging.getLogger(__name__)

Frame = tuple[float, dict[str, float]]


def minute_of(ts: float) -> float:
    return math.floor(ts / 60.0) * 60.0


@dataclass(slots=True)
class Rollup:
    """One series over one minute (``minute``: its start, seconds since the epoch)."""

    series: str
    minute: float
    min: float
    max: float
    total: float
    count: int

    @property
    def mean(self) -> float:
        return self.total / self.count

    def add(self, value: float) -> None:
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        self.total += value
        self.count += 1


class SampleStore:
    """Raw frames for ``live_window_s`` seconds, rollups per minute; see the module docstring."""

    def __init__(self, live_window_s: float = 3600.0) -> None:
        self.live_window_s = float(live_window_s)
        self._lock = threading.Lock()
        self._frames: deque[Frame] = deque()
        self._open: dict[str, Rollup] = {}
        self._closed: list[Rollup] = []
        self._names: dict[str, float] = {}  # series -> last time seen

    # --- writing -----------------------------------------------------------------------------------------------------
    def add(self, ts: float, values: dict[str, float]) -> None:
        """Add one tick. Times must not go backwards (a tick older than the newest frame is ignored)."""
        values = {name: float(value) for name, value in values.items() if value is not None and math.isfinite(value)}
        with self._lock:
            if self._frames and ts < self._frames[-1][0]:
                log.warning("ignoring a sample older than the newest one (%.3f < %.3f)", ts, self._frames[-1][0])
                return
            self._frames.append((ts, values))
            horizon = ts - self.live_window_s
            while self._frames and self._frames[0][0] < horizon:
                self._frames.popleft()
            minute = minute_of(ts)
            for name, value in values.items():
                self._names[name] = ts
                rollup = self._open.get(name)
                if rollup is not None and rollup.minute != minute:
                    self._closed.append(rollup)
                    rollup = None
                if rollup is None:
                    self._open[name] = Rollup(name, minute, value, value, value, 1)
                else:
                    rollup.add(value)
            # A series that stopped (a worker that went away) closes its last minute once the minute is over.
            for name in [n for n, r in self._open.items() if r.minute < minute and n not in values]:
                self._closed.append(self._open.pop(name))
            for name in [n for n, seen in self._names.items() if seen < horizon]:
                del self._names[name]

    def take_closed(self) -> list[Rollup]:
        """The finished minutes not handed over yet (each is handed over once)."""
        with self._lock:
            closed, self._closed = self._closed, []
        return closed

    def take_all(self) -> list[Rollup]:
        """Every rollup not handed over, the minutes in progress included (on shutdown)."""
        with self._lock:
            out = self._closed + list(self._open.values())
            self._closed, self._open = [], {}
        return out

    def give_back(self, rollups: Iterable[Rollup]) -> None:
        """Return rollups that could not be written (the database was down): they are offered again next time."""
        with self._lock:
            self._closed[:0] = list(rollups)

    # --- reading -----------------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Series seen within the live window."""
        with self._lock:
            return sorted(self._names)

    def latest(self) -> Frame | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def frames(self, since: float | None = None, names: Callable[[str], bool] | None = None) -> list[Frame]:
        """Raw ticks newer than ``since``, each filtered to the series ``names`` accepts (all when None)."""
        with self._lock:
            frames = [frame for frame in self._frames if since is None or frame[0] > since]
        if names is None:
            return frames
        return [(ts, {k: v for k, v in values.items() if names(k)}) for ts, values in frames]

    def raw(self, names: Iterable[str], start: float, end: float) -> dict[str, list[tuple[float, float]]]:
        """``{series: [(ts, value), ...]}`` for ``start <= ts < end``, from memory."""
        wanted = list(names)
        out: dict[str, list[tuple[float, float]]] = {name: [] for name in wanted}
        with self._lock:
            frames = [frame for frame in self._frames if start <= frame[0] < end]
        for ts, values in frames:
            for name in wanted:
                value = values.get(name)
                if value is not None:
                    out[name].append((ts, value))
        return out

    def rollups(self, names: Iterable[str], start: float, end: float) -> list[Rollup]:
        """Rollups held here (finished but not yet written, and in progress) for minutes in ``[start, end)``."""
        wanted = set(names)
        with self._lock:
            held = self._closed + list(self._open.values())
            return [
                Rollup(r.series, r.minute, r.min, r.max, r.total, r.count)
                for r in held
                if r.series in wanted and start <= r.minute < end
            ]


_default: SampleStore | None = None
_default_lock = threading.Lock()


def default_store() -> SampleStore:
    """The process's store (the collector writes it, the websocket consumer and the history API read it)."""
    global _default
    with _default_lock:
        if _default is None:
            from django.conf import settings  # here, not at the top: the store itself is Django-free (benches use it)

            _default = SampleStore(settings.METRICS_LIVE_WINDOW_S)
        return _default
