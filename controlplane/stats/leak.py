"""Memory-leak detection on a memory series sampled at about 1 Hz (numpy and scipy only; no Django).

The method, in the order the data goes through it (docs/statistics.md has the reasons and the calibration):

1. **Blocks.** Samples are reduced per ``block_s`` block (10 s, aligned on multiples of ``block_s``) to their median
   and minimum, and the load to its median and its value at the memory minimum.
2. **Load.** Memory explained by load (KV cache of active sessions, ...) is subtracted: ``memory - b * load``, with
   ``b`` fixed by ``load_bytes_per_unit`` (1.0 when the load is the KV-cache bytes) or fitted (Huber regression of
   one-minute changes of memory on those of load, blind to any slow trend), and never below zero.
3. **Floors.** The garbage-collection saw-tooth is removed by keeping only the floor memory returns to: the data is
   cut into pieces at each GC drop (a fall between blocks of ``drop_sigmas`` robust SDs) and at least every segment
   (``segment_s``, or 1.5 x the 90th percentile of the intervals between drops when there is a saw-tooth, within
   ``min_segment_s``..``max_segment_s``), and each piece gives one floor: its lowest adjusted block minimum.
4. **Trend.** Every ``eval_every_s``, for each window in ``windows_s``, the floors in the window get a one-sided
   Mann-Kendall test for growth and a Theil-Sen slope with Sen's confidence interval. Jumps between consecutive
   floors (allocator steps up and releases: changes outside what the rates of change just before and after them
   predict, by ``jump_sigmas`` robust SDs and by ``min_jump_bytes``) split the floors into runs, and both statistics
   use only pairs within a run (stratified): memory that jumps up once and stays flat is not growth. A window is
   *rising* when the test is significant at ``alpha``, the slope reaches ``min_slope_bytes_per_s``, the growth over
   the window reaches ``min_growth_bytes`` (scaled up as sqrt(window / 30 min) beyond 30 minutes, the way a random
   wander grows), and the last third of the window still grows at ``min_recent_fraction`` of the window's slope (a
   leak that stopped is not a leak any more).
5. **Confirmation.** A window becomes a *leak* after ``confirmations`` consecutive rising checks, and stops being one
   after as many consecutive checks without growth. ``suspect`` means rising but not yet confirmed.

The state is ``leak`` if any window is a leak, else ``suspect`` if any is rising, else ``ok``. The reported slope is
the Theil-Sen slope of the floors since the growth began (the knee of a hinge fit in the window that carries the
state), and the time to OOM is how long memory's recent peak (load and saw-tooth included) takes to reach ``limit``
at that slope.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

import numpy as np

from .trends import TheilSen, huber_fit, mann_kendall, robust_scale, theil_sen

__all__ = ["LeakConfig", "LeakDetector", "LeakState", "LeakStatus", "WindowCheck", "analyse", "evaluations"]

MB = 1_000_000
GROWTH_REFERENCE_S = 1800.0
_MIN_AFTER_ONSET = 4
_MIN_SHARE_AFTER_ONSET = 0.4
_KNEE_F = 10.0


class LeakState(StrEnum):
    OK = "ok"
    SUSPECT = "suspect"
    LEAK = "leak"


@dataclass(frozen=True)
class LeakConfig:
    """Parameters of the leak detector. Defaults were calibrated on bench/traces.py (see docs/statistics.md)."""

    block_s: float = 10.0
    """Samples are reduced to a median and a minimum per block this long (s). 1..300."""
    eval_every_s: float = 60.0
    """The trend test runs once per this many seconds; a multiple of ``block_s``. ``block_s``..3600."""
    windows_s: tuple[float, ...] = (600.0, 1800.0, 3600.0)
    """Lengths of the sliding windows tested (s), shortest first: short ones catch fast leaks, long ones slow leaks.
    Each at least ``min_segments`` * ``min_segment_s``, at most 7 days."""
    segment_s: float | None = None
    """Longest piece that gives one floor (s); None: 1.5 x the longest usual GC cycle seen when there is a saw-tooth
    (at least one drop per ``max_segment_s`` on average), within the two bounds below, else ``min_segment_s``."""
    min_segment_s: float = 30.0
    """Shortest automatic segment (s). ``block_s``..``max_segment_s``."""
    max_segment_s: float = 300.0
    """Longest automatic segment (s): saw-tooth cycles longer than this are taken for trends. ..3600."""
    min_segments: int = 5
    """A window is tested only when it holds at least this many floors (and as many pairs within runs). 3..1000."""
    min_coverage: float = 0.8
    """A window is tested only when blocks cover at least this share of it (gaps in the data). 0.1..1."""
    alpha: float = 0.01
    """Significance level of the one-sided Mann-Kendall test for growth, per window and check. 1e-9..0.2."""
    min_slope_bytes_per_s: float = 0.5 * MB / 60
    """Growth slower than this (bytes/s; default 0.5 MB/min, 0.72 GB/day) is never a leak. >= 0."""
    min_growth_bytes: float = 28 * MB
    """Growth over a window (slope x window) below this is never a leak; windows longer than 30 minutes scale it by
    sqrt(window / 30 min), the way a random wander grows. >= 0."""
    jump_sigmas: float = 4.0
    """A change between consecutive floors this many robust SDs away from the usual change is a jump. 2..100."""
    min_jump_bytes: float = 8 * MB
    """... and only if it is at least this large (bytes). >= 0."""
    min_recent_fraction: float = 0.25
    """The last third of the window must grow at least this share of the window's slope. 0..1."""
    confirmations: int = 2
    """Consecutive rising checks needed to declare a leak, and checks without growth to clear it. 1..100."""
    load_bytes_per_unit: float | None = None
    """Bytes of memory per unit of load; None: fitted from the data (needs load to vary). >= 0."""
    drop_sigmas: float = 3.0
    """A block-to-block fall larger than this many robust SDs of block changes counts as a GC drop. 2..100."""

    def __post_init__(self) -> None:
        checks = [
            ("block_s", 1.0 <= self.block_s <= 300.0, "between 1 and 300"),
            ("eval_every_s", self.block_s <= self.eval_every_s <= 3600.0, f"between block_s={self.block_s} and 3600"),
            ("min_segment_s", self.block_s <= self.min_segment_s <= self.max_segment_s, "in [block_s, max_segment_s]"),
            ("max_segment_s", self.max_segment_s <= 3600.0, "at most 3600"),
            ("min_segments", 3 <= self.min_segments <= 1000, "between 3 and 1000"),
            ("min_coverage", 0.1 <= self.min_coverage <= 1.0, "between 0.1 and 1"),
            ("alpha", 1e-9 <= self.alpha <= 0.2, "between 1e-9 and 0.2"),
            ("min_slope_bytes_per_s", self.min_slope_bytes_per_s >= 0, "at least 0"),
            ("min_growth_bytes", self.min_growth_bytes >= 0, "at least 0"),
            ("jump_sigmas", 2.0 <= self.jump_sigmas <= 100.0, "between 2 and 100"),
            ("min_jump_bytes", self.min_jump_bytes >= 0, "at least 0"),
            ("min_recent_fraction", 0.0 <= self.min_recent_fraction <= 1.0, "between 0 and 1"),
            ("confirmations", 1 <= self.confirmations <= 100, "between 1 and 100"),
            ("drop_sigmas", 2.0 <= self.drop_sigmas <= 100.0, "between 2 and 100"),
        ]
        for name, ok, bound in checks:
            if not ok:
                raise ValueError(f"LeakConfig.{name} must be {bound}, got {getattr(self, name)!r}")
        ratio = self.eval_every_s / self.block_s
        if abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(
                f"LeakConfig.eval_every_s={self.eval_every_s} must be a multiple of block_s={self.block_s}"
            )
        if self.segment_s is not None and not self.block_s <= self.segment_s <= 3600.0:
            raise ValueError(f"LeakConfig.segment_s must be None or in [block_s, 3600], got {self.segment_s!r}")
        if self.load_bytes_per_unit is not None and not self.load_bytes_per_unit >= 0:
            raise ValueError(f"LeakConfig.load_bytes_per_unit must be None or >= 0, got {self.load_bytes_per_unit!r}")
        windows = tuple(float(w) for w in self.windows_s)
        shortest = self.min_segments * self.min_segment_s
        if not windows or list(windows) != sorted(set(windows)) or windows[0] < shortest or windows[-1] > 7 * 86400:
            raise ValueError(
                f"LeakConfig.windows_s must be increasing, distinct, at least min_segments * min_segment_s = "
                f"{shortest:g} s and at most 7 days, got {self.windows_s!r}"
            )
        object.__setattr__(self, "windows_s", windows)

    @property
    def history_s(self) -> float:
        """How much history the detector keeps: the longest window plus one longest segment."""
        return self.windows_s[-1] + max(self.max_segment_s, self.segment_s or 0.0) + self.block_s


@dataclass(frozen=True)
class WindowCheck:
    """The trend test of one window at one check."""

    window_s: float
    floors: int
    slope_bytes_per_s: float
    slope_low: float
    slope_high: float
    p_value: float
    growth_bytes: float
    jumps: int
    """Jumps (steps up or down) between the floors in the window; growth across them does not count."""
    recent_slope_bytes_per_s: float
    rising: bool
    reason: str


@dataclass(frozen=True)
class LeakStatus:
    """The detector's verdict after its last check."""

    state: LeakState
    reason: str
    """One line for a person: what grew, how fast, over which window, or why it is not a leak."""
    time: float | None = None
    """When the last check ran (the end of its last block), on the clock of the input times."""
    ready: bool = False
    """False until the shortest window holds enough data to be tested."""
    slope_bytes_per_s: float = 0.0
    slope_ci_bytes_per_s: tuple[float, float] = (0.0, 0.0)
    """Sen's 95% confidence interval of the slope."""
    p_value: float = 1.0
    confirmations: int = 0
    """Consecutive rising checks of the window that carries the state (0 when it did not rise at the last check)."""
    window_s: float | None = None
    """The window whose test carries the state (the shortest leak, else the shortest rising one)."""
    onset_time: float | None = None
    """When the growth began, if inside that window (the knee of a hinge fit); the slope is measured from there."""
    segment_s: float | None = None
    """The longest piece per floor in use (see ``LeakConfig.segment_s``)."""
    level_bytes: float | None = None
    """Recent peak of memory (max of block medians over the last segment)."""
    limit_bytes: float | None = None
    time_to_oom_s: float | None = None
    """Projected seconds until ``level_bytes`` grows to ``limit_bytes`` at the slope; None without a limit, or when
    the state is ok or the slope is not positive."""
    time_to_oom_range_s: tuple[float | None, float | None] = (None, None)
    """The same at the upper and lower ends of the slope's interval (None: no end, the slope may be zero)."""
    load_bytes_per_unit: float = 0.0
    """The load coefficient used (0: no load series)."""
    windows: tuple[WindowCheck, ...] = field(default=(), repr=False)
    """The test of each window at the last check (windows without enough data are left out)."""

    @property
    def slope_bytes_per_min(self) -> float:
        return self.slope_bytes_per_s * 60.0

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for JSON fields and templates)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "windows"}
        out["state"] = str(self.state)
        out["slope_bytes_per_min"] = self.slope_bytes_per_min
        out["windows"] = [{f.name: getattr(w, f.name) for f in fields(w)} for w in self.windows]
        return out


@dataclass
class _Window:
    rising_streak: int = 0
    quiet_streak: int = 0
    confirmed: bool = False
    last: WindowCheck | None = None


class LeakDetector:
    """Streaming leak detector: call ``update`` with each sample; the heavy test runs once per ``eval_every_s``.

    One instance per memory series. Call ``reset()`` when the process behind the series restarts.
    """

    def __init__(self, config: LeakConfig | None = None, limit: float | None = None) -> None:
        self.config = config or LeakConfig()
        self.limit = limit
        self.reset()

    def reset(self) -> None:
        """Forget everything (the process restarted, or memory was freed on purpose)."""
        cfg = self.config
        size = math.ceil(cfg.history_s / cfg.block_s) + 1
        self._blocks: deque[tuple[int, float, float, float, float]] = deque(maxlen=size)
        self._bin: int | None = None
        self._values: list[float] = []
        self._loads: list[float] = []
        self._last_t: float | None = None
        self._windows = {w: _Window() for w in cfg.windows_s}
        self._every = round(cfg.eval_every_s / cfg.block_s)
        self.status = LeakStatus(state=LeakState.OK, reason="no data yet", limit_bytes=self.limit)

    def update(self, t: float, value: float, load: float | None = None) -> LeakStatus:
        """Add one sample (time in seconds, memory in bytes, optional load); returns the latest status."""
        t = float(t)
        value = float(value)
        if not (math.isfinite(t) and math.isfinite(value)):
            raise ValueError(f"time and value must be finite numbers, got t={t!r}, value={value!r}")
        if load is not None and not math.isfinite(float(load)):
            raise ValueError(f"load must be a finite number or None, got {load!r}")
        if self._last_t is not None and t <= self._last_t:
            raise ValueError(f"times must increase: got t={t!r} after t={self._last_t!r}")
        self._last_t = t
        b = math.floor(t / self.config.block_s)
        if self._bin is not None and b != self._bin:
            self._close_block(self._bin)
        self._bin = b
        self._values.append(value)
        if load is not None:
            self._loads.append(float(load))
        return self.status

    def _close_block(self, index: int) -> None:
        values = self._values
        lowest = min(range(len(values)), key=values.__getitem__)
        if len(self._loads) == len(values):
            load, load_at_min = _mid(sorted(self._loads)), self._loads[lowest]
        else:
            load = load_at_min = math.nan
        self.add_block(index, _mid(sorted(values)), values[lowest], load, load_at_min)
        self._values, self._loads = [], []

    def add_block(
        self, index: int, median: float, minimum: float, load: float = math.nan, load_at_min: float = math.nan
    ) -> LeakStatus:
        """Add a finished block (its index is ``floor(t / block_s)``): the median and the minimum of its memory
        samples, the median of its load samples and the load at the memory minimum (NaN: no load)."""
        self._blocks.append((index, median, minimum, load, load_at_min))
        if (index + 1) % self._every == 0:
            self.status = self._check((index + 1) * self.config.block_s)
        return self.status

    def _check(self, now: float) -> LeakStatus:
        cfg = self.config
        data = np.array(self._blocks, dtype=float)
        index, memory, lowest, load = data[:, 0].astype(np.int64), data[:, 1], data[:, 2], data[:, 3]
        coef = self._load_coefficient(index, memory, load)
        adjusted = lowest - coef * np.nan_to_num(data[:, 4]) if coef else lowest
        times = (index + 0.5) * cfg.block_s
        drops = _drops(index, adjusted, cfg.drop_sigmas)
        segment = cfg.segment_s or _auto_segment(cfg, index, drops)
        floor_times, floors = _floors(index, times, adjusted, drops, round(segment / cfg.block_s))
        pieces, strict = _pieces(floor_times, floors, cfg.jump_sigmas, cfg.min_jump_bytes)
        level = float(memory[times > now - segment].max())
        checks = []
        for w in cfg.windows_s:
            check = _test_window(cfg, times, floor_times, floors, pieces, now, w)
            checks.append(check)
            self._advance(self._windows[w], check)
        base = dict(time=now, segment_s=segment, level_bytes=level, limit_bytes=self.limit, load_bytes_per_unit=coef)
        return self._status(tuple(c for c in checks if c is not None), (floor_times, floors, strict), base)

    def _advance(self, state: _Window, check: WindowCheck | None) -> None:
        k = self.config.confirmations
        state.last = check
        if check is not None and check.rising:
            state.rising_streak, state.quiet_streak = state.rising_streak + 1, 0
            state.confirmed = state.confirmed or state.rising_streak >= k
        else:
            state.rising_streak, state.quiet_streak = 0, state.quiet_streak + 1
            state.confirmed = state.confirmed and state.quiet_streak < k

    def _status(
        self,
        checks: tuple[WindowCheck, ...],
        floors: tuple[np.ndarray, np.ndarray, np.ndarray],
        base: dict[str, Any],
    ) -> LeakStatus:
        base.update(ready=bool(checks), windows=checks)
        if not checks:
            need = self.config.windows_s[0] * self.config.min_coverage
            return LeakStatus(state=LeakState.OK, reason=f"warming up: need {need:.0f} s of data", **base)
        leaks = [w for w, s in self._windows.items() if s.confirmed and s.last is not None]
        rising = [w for w, s in self._windows.items() if s.last is not None and s.last.rising]
        if leaks:
            state, w = LeakState.LEAK, leaks[0]
        elif rising:
            state, w = LeakState.SUSPECT, rising[0]
        else:
            state, w = LeakState.OK, max((c for c in checks), key=lambda c: -c.p_value).window_s
        ws = self._windows[w]
        check = ws.last
        assert check is not None  # w is a window with a check: a confirmed or rising one, or one of ``checks``
        slope, onset = TheilSen(check.slope_bytes_per_s, 0.0, check.slope_low, check.slope_high), None
        if state != LeakState.OK:
            slope, onset = _since_onset(*floors, base["time"] - w, slope)
        ttoom = _time_to_oom(self.limit, base["level_bytes"], slope) if state != LeakState.OK else (None,) * 3
        return LeakStatus(
            state=state,
            reason=_reason(state, check, ws, self.config.confirmations, slope.slope, onset),
            slope_bytes_per_s=slope.slope,
            slope_ci_bytes_per_s=(slope.low, slope.high),
            p_value=check.p_value,
            confirmations=ws.rising_streak,
            window_s=w,
            onset_time=onset,
            time_to_oom_s=ttoom[0],
            time_to_oom_range_s=(ttoom[1], ttoom[2]),
            **base,
        )

    def _load_coefficient(self, index: np.ndarray, memory: np.ndarray, load: np.ndarray) -> float:
        """Bytes per unit of load: fixed by the config, or the Huber slope of one-minute changes of the block medians
        of memory on those of load (changes, so that a trend in memory does not leak into the coefficient)."""
        if np.all(np.isnan(load)):
            return 0.0
        if self.config.load_bytes_per_unit is not None:
            return self.config.load_bytes_per_unit
        lag = max(1, round(60.0 / self.config.block_s))
        ok = ~np.isnan(load[lag:]) & ~np.isnan(load[:-lag]) & (index[lag:] - index[:-lag] == lag)
        dm, dl = (memory[lag:] - memory[:-lag])[ok], (load[lag:] - load[:-lag])[ok]
        if dm.size < 10 or not np.any(dl):
            return 0.0
        _, coef = huber_fit(np.column_stack([np.ones_like(dl), dl]), dm)
        return max(0.0, float(coef))


def _mid(ordered: list[float]) -> float:
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2.0


def _drops(index: np.ndarray, adjusted: np.ndarray, sigmas: float) -> np.ndarray:
    """Flags blocks that fall from the block before by more than ``sigmas`` robust SDs of block-to-block changes."""
    flags = np.zeros(index.size, dtype=bool)
    step = np.diff(index) == 1
    diffs = np.diff(adjusted)
    if diffs[step].size < 10:
        return flags
    med, sd = robust_scale(diffs[step])
    flags[1:] = step & (diffs < med - sigmas * max(sd, 1.0))
    return flags


def _auto_segment(cfg: LeakConfig, index: np.ndarray, drops: np.ndarray) -> float:
    """1.5 x the 90th percentile of the intervals between drops (the longest usual GC cycle), within bounds."""
    at = index[drops]
    if at.size < max(4, (index[-1] - index[0]) * cfg.block_s / cfg.max_segment_s):
        return cfg.min_segment_s  # no saw-tooth: fewer than one drop per longest segment
    cycle = float(np.percentile(np.diff(at), 90)) * cfg.block_s
    segment = math.ceil(1.5 * cycle / cfg.block_s) * cfg.block_s
    return float(min(max(segment, cfg.min_segment_s), cfg.max_segment_s))


def _floors(
    index: np.ndarray, times: np.ndarray, adjusted: np.ndarray, drops: np.ndarray, longest: int
) -> tuple[np.ndarray, np.ndarray]:
    """Minimum of each piece, and its time: pieces start at each drop and each gap, and are cut every ``longest``
    blocks after their start (so that data without a saw-tooth still gives a floor per segment)."""
    start = drops.copy()
    start[0] = True
    start[1:] |= np.diff(index) != 1
    first = np.maximum.accumulate(np.where(start, np.arange(index.size), 0))
    chunk = (index - index[first]) // max(1, longest)
    group = np.cumsum(start | np.r_[False, np.diff(chunk) != 0])
    order = np.lexsort((adjusted, group))
    lowest = order[np.r_[True, np.diff(group[order]) != 0]]
    return times[lowest], adjusted[lowest]


def _median3(y: np.ndarray) -> np.ndarray:
    """Running median of three (ends kept): one odd floor (a cycle whose drop was missed) is not a step."""
    out = y.copy()
    out[1:-1] = np.median(np.stack([y[:-2], y[1:-1], y[2:]]), axis=0)
    return out


def _row_medians(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median of the non-NaN values of each row (NaN when none), and their count; cheaper than ``np.nanmedian``."""
    ordered = np.sort(rows, axis=1)  # NaNs last
    count = np.count_nonzero(~np.isnan(rows), axis=1)
    lo = np.take_along_axis(ordered, np.maximum(count - 1, 0)[:, None] // 2, axis=1)[:, 0]
    hi = np.take_along_axis(ordered, (count // 2)[:, None], axis=1)[:, 0]
    return np.where(count > 0, (lo + hi) / 2.0, np.nan), count


def _pieces(times: np.ndarray, floors: np.ndarray, sigmas: float, min_jump: float) -> tuple[np.ndarray, np.ndarray]:
    """Piece labels per floor (a new piece starts after each jump): as judged, and with the ends judged too.

    A jump is a change between consecutive (median-of-3) floors that lies outside the range the rates of change
    just before and just after it (medians of three) predict, by ``sigmas`` robust SDs and by more than half the
    change, and is at least ``min_jump`` bytes: a plateau has flat rates on both sides; the start of a leak has a
    steady rate after it and is not a jump. A change with fewer than two rates after it is not judged yet (first
    labels); the second labels judge it against the rates before it alone, for the reported slope, which must not
    take a fresh step for growth.
    """
    n = floors.size
    if n < 6:
        zeros = np.zeros(n, dtype=np.int64)
        return zeros, zeros
    d = np.diff(_median3(floors))
    dt = np.diff(times)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(d / dt, 3, constant_values=np.nan), 3)
    rb, count_before = _row_medians(windows[: d.size])
    ra, count_after = _row_medians(windows[4 : 4 + d.size])
    has_after = count_after >= 2
    expected = np.where(np.isnan(rb), 0.0, rb)
    expected = np.where(np.isnan(ra), expected, np.where(np.isnan(rb), ra, (rb + ra) / 2.0)) * dt
    _, sd = robust_scale(d - expected, floor=1.0)
    labels = []
    for ends in (False, True):
        after = np.where(has_after, ra, rb)
        lo, hi = np.fmin(rb, after) * dt, np.fmax(rb, after) * dt
        excess = np.abs(d - np.clip(d, lo, hi))
        known = (count_before >= 2) & (has_after | ends)
        jump = known & (excess > sigmas * sd) & (excess > 0.5 * np.abs(d)) & (np.abs(d) >= min_jump)
        labels.append(np.r_[0, np.cumsum(jump)])
    return labels[0], labels[1]


def _test_window(
    cfg: LeakConfig,
    times: np.ndarray,
    floor_times: np.ndarray,
    floors: np.ndarray,
    pieces: np.ndarray,
    now: float,
    window: float,
) -> WindowCheck | None:
    """Trend test of the floors in ``(now - window, now]``; None when the window lacks data."""
    if np.count_nonzero(times > now - window) * cfg.block_s < cfg.min_coverage * window:
        return None
    inside = floor_times > now - window
    x, y, g = floor_times[inside] - (now - window), floors[inside], pieces[inside]
    sizes = np.unique(g, return_counts=True)[1]
    if y.size < cfg.min_segments or np.sum(sizes * (sizes - 1)) < cfg.min_segments * (cfg.min_segments - 1):
        return None
    mk = mann_kendall(y, g)
    ts = theil_sen(x, y, groups=g)
    growth = ts.slope * window
    need = cfg.min_growth_bytes * math.sqrt(max(1.0, window / GROWTH_REFERENCE_S))
    tail = max(4, y.size // 3)
    recent = _recent_slope(x[-tail:], y[-tail:], g[-tail:])
    failures = []
    if mk.p_value >= cfg.alpha:
        failures.append(f"p={mk.p_value:.2g} >= {cfg.alpha:g}")
    if ts.slope < cfg.min_slope_bytes_per_s:
        failures.append(f"slope {ts.slope * 60 / MB:.2f} MB/min below {cfg.min_slope_bytes_per_s * 60 / MB:.2f}")
    if growth < need:
        failures.append(f"growth {growth / MB:.1f} MB below {need / MB:.1f}")
    if recent < cfg.min_recent_fraction * ts.slope:
        failures.append(f"the last third grows {recent * 60 / MB:.2f} MB/min only (stopped)")
    return WindowCheck(
        window_s=window,
        floors=int(y.size),
        slope_bytes_per_s=ts.slope,
        slope_low=ts.low,
        slope_high=ts.high,
        p_value=mk.p_value,
        growth_bytes=growth,
        jumps=int(g[-1] - g[0]),
        recent_slope_bytes_per_s=recent,
        rising=not failures,
        reason="; ".join(failures) or "rising",
    )


def _recent_slope(x: np.ndarray, y: np.ndarray, g: np.ndarray) -> float:
    try:
        return theil_sen(x, y, groups=g).slope
    except ValueError:  # every floor in its own piece: jumps only, no growth within pieces
        return 0.0


def _reason(state: LeakState, check: WindowCheck, window: _Window, k: int, slope: float, onset: float | None) -> str:
    test = f"over {check.window_s / 60:g} min (p={check.p_value:.2g})"
    since = "" if onset is None else f", {slope * 60 / MB:+.2f} MB/min since the growth began"
    if state == LeakState.LEAK:
        tail = "" if check.rising else f", clearing ({window.quiet_streak}/{k} checks without growth)"
        return f"leak: memory floor grows {test}{since}{tail}"
    if state == LeakState.SUSPECT:
        return f"suspect: memory floor grows {test}{since}, {window.rising_streak}/{k} confirmations"
    return f"ok: no sustained growth ({check.reason}; window {check.window_s / 60:g} min)"


def _since_onset(
    times: np.ndarray, floors: np.ndarray, pieces: np.ndarray, start: float, fallback: TheilSen
) -> tuple[TheilSen, float | None]:
    """Slope of the floors since the growth began, and when it began (None: before the window).

    The onset is the knee of the best hinge fit ``floor = a_piece + slope * max(0, t - onset)`` over the floors of
    the window (each piece its own level, so steps do not move it); the slope is then Theil-Sen's over the floors
    from the onset on, so that a window that straddles the onset does not dilute it.
    """
    inside = times > start
    x, y, g = times[inside], floors[inside], pieces[inside]
    if y.size < 2 * _MIN_AFTER_ONSET:
        return fallback, None
    labels = np.unique(g, return_inverse=True)[1]
    onehot = np.eye(labels.max() + 1)[labels]
    counts = onehot.sum(axis=0)
    knees = x[: y.size - max(_MIN_AFTER_ONSET, math.ceil(_MIN_SHARE_AFTER_ONSET * y.size)) + 1]
    hinge = np.maximum(0.0, x[None, :] - knees[:, None])
    hinge -= ((hinge @ onehot) / counts) @ onehot.T
    resid = y - ((y @ onehot) / counts) @ onehot.T
    power = np.einsum("ij,ij->i", hinge, hinge)
    fit = np.where(power > 0, (hinge @ resid) ** 2 / np.where(power > 0, power, 1.0), -np.inf)
    fit[(hinge @ resid) <= 0] = -np.inf
    best = int(np.argmax(fit))
    if not np.isfinite(fit[best]):
        return fallback, None
    dof = y.size - counts.size - 2
    error = (resid @ resid - fit[best]) / max(dof, 1)
    if best and (dof < 1 or not np.isfinite(fit[0]) or fit[best] - fit[0] < _KNEE_F * error):
        best = 0  # a knee must fit clearly better than a straight line (an F statistic of at least _KNEE_F)
    after = x >= knees[best]
    try:
        slope = theil_sen(x[after], y[after], groups=g[after])
    except ValueError:
        return fallback, None
    return slope, (None if best == 0 else float(knees[best]))


def _time_to_oom(limit: float | None, level: float, slope: TheilSen) -> tuple[float | None, ...]:
    if limit is None or slope.slope <= 0:
        return None, None, None
    room = max(0.0, limit - level)
    upper = room / slope.low if slope.low > 0 else None
    return room / slope.slope, room / slope.high, upper


def _validate(
    times: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    loads: Sequence[float] | np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.ndim != 1 or v.shape != t.shape:
        raise ValueError(f"times and values must be 1-D and of equal length, got shapes {t.shape} and {v.shape}")
    if t.size < 3:
        raise ValueError(f"need at least 3 samples, got {t.size}")
    for name, arr in (("times", t), ("values", v)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contain {np.count_nonzero(~np.isfinite(arr))} NaN or infinite value(s)")
    if np.any(np.diff(t) <= 0):
        i = int(np.flatnonzero(np.diff(t) <= 0)[0])
        raise ValueError(f"times must increase: times[{i + 1}]={t[i + 1]!r} follows times[{i}]={t[i]!r}")
    if loads is None:
        return t, v, None
    ld = np.asarray(loads, dtype=float)
    if ld.shape != t.shape:
        raise ValueError(f"loads must match times in length, got shapes {ld.shape} and {t.shape}")
    if not np.all(np.isfinite(ld)):
        raise ValueError(f"loads contain {np.count_nonzero(~np.isfinite(ld))} NaN or infinite value(s)")
    return t, v, ld


def _block_stats(bins: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Index, median, minimum and the position of the (first) minimum of ``values`` per run of equal ``bins``
    (sorted), with the same arithmetic as the streaming path."""
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    counts = np.diff(np.r_[starts, bins.size])
    order = np.lexsort((np.arange(bins.size), values, bins))
    ordered = values[order]
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    medians = np.where(lo == hi, ordered[lo], (ordered[lo] + ordered[hi]) / 2.0)
    return bins[starts], medians, ordered[starts], order[starts]


def evaluations(
    times: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    loads: Sequence[float] | np.ndarray | None = None,
    limit: float | None = None,
    config: LeakConfig | None = None,
) -> list[LeakStatus]:
    """The status after each check over a whole series, as the streaming detector would have given them.

    The last block (possibly incomplete, still open for the streaming detector) is left out, as there.
    """
    t, v, ld = _validate(times, values, loads)
    detector = LeakDetector(config, limit=limit)
    bins = np.floor(t / detector.config.block_s).astype(np.int64)
    index, medians, minima, argmin = _block_stats(bins, v)
    if ld is None:
        load_medians = load_at_min = np.full(index.size, math.nan)
    else:
        load_medians, load_at_min = _block_stats(bins, ld)[1], ld[argmin]
    out = []
    every = detector._every
    columns = (index, medians, minima, load_medians, load_at_min)
    for i, m, lo, lm, lmin in zip(*(c[:-1].tolist() for c in columns), strict=True):
        status = detector.add_block(i, m, lo, lm, lmin)
        if (i + 1) % every == 0:
            out.append(status)
    return out


def analyse(
    times: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    loads: Sequence[float] | np.ndarray | None = None,
    limit: float | None = None,
    config: LeakConfig | None = None,
) -> LeakStatus:
    """Leak status at the end of a series (times in s, strictly increasing; memory in bytes; optional load)."""
    checks = evaluations(times, values, loads, limit, config)
    if checks:
        return checks[-1]
    return LeakStatus(state=LeakState.OK, reason="warming up: no check has run yet", limit_bytes=limit)
