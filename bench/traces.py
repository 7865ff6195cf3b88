"""Synthetic memory traces, latency series and model outputs, for the benchmarks and the tests.

Every generator takes a seed or a ``numpy.random.Generator`` and is deterministic for it. "MB" here is 10**6 bytes.

Memory traces are sampled at 1 Hz and made of parts that a real worker shows:

- ``noise``: measurement jitter (Gaussian plus a heavy tail) and short upward spikes from big requests;
- ``sawtooth``: garbage-collection or allocator-cache saw-tooth, a ramp up and a drop back, period 20-120 s;
- ``steps``: allocator plateaus, memory that jumps up once and stays flat (released later, bounded overall);
- ``load``: KV cache held by sessions that arrive, live ~10 minutes and expire, with traffic that rises and falls
  over hours; the load series is the KV-cache bytes they hold (``sessions`` has their count);
- ``walk``: a slow random walk kept within bounds (fragmentation that wanders);
- ``leak``: a linear growth from ``leak_start_s`` (until ``leak_stop_s`` when given).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "GB",
    "MB",
    "STABLE_KINDS",
    "MemoryTrace",
    "latency_series",
    "memory_trace",
    "output_lengths",
    "token_outputs",
]

MB = 1_000_000
GB = 1_000_000_000
STABLE_KINDS = ("flat", "sawtooth", "steps", "load", "walk", "mixed")
_PARTS = {
    "flat": (),
    "sawtooth": ("sawtooth",),
    "steps": ("steps", "sawtooth"),
    "load": ("load",),
    "walk": ("walk",),
    "mixed": ("sawtooth", "steps", "load", "walk"),
}


@dataclass(frozen=True)
class MemoryTrace:
    """A memory series at 1 Hz, its load series, and the truth about the leak in it."""

    name: str
    times: np.ndarray
    values: np.ndarray
    loads: np.ndarray | None
    """KV-cache bytes held by active sessions (the load to hand to the detector), or None."""
    sessions: np.ndarray | None
    """Active sessions (a coarser load: bytes per session vary from 4 to 12 MB)."""
    clean: np.ndarray
    """The trace without noise and without the leak: what memory would be if nothing leaked."""
    leak_rate: float = 0.0
    """Leak growth in bytes per second (0: no leak)."""
    leak_start_s: float | None = None
    leak_stop_s: float | None = None
    limit: float | None = None

    def leaked(self, t: float) -> float:
        """Bytes leaked by time ``t``."""
        if not self.leak_rate or self.leak_start_s is None:
            return 0.0
        stop = self.leak_stop_s if self.leak_stop_s is not None else np.inf
        return self.leak_rate * float(np.clip(t, self.leak_start_s, stop) - self.leak_start_s)

    def true_time_to_oom(self, t: float, lookback_s: float = 600.0) -> float | None:
        """Seconds from ``t`` until the leak, continuing, lifts the recent peak of the leak-free trace to the limit."""
        if self.limit is None or not self.leak_rate:
            return None
        recent = self.clean[(self.times > t - lookback_s) & (self.times <= t)]
        peak = float(recent.max()) + self.leaked(t)
        return max(0.0, (self.limit - peak) / self.leak_rate)


def memory_trace(
    kind: str,
    hours: float,
    seed: int,
    *,
    base: float = 6 * GB,
    leak_mb_per_min: float = 0.0,
    leak_start_s: float = 0.0,
    leak_stop_s: float | None = None,
    limit: float | None = None,
    walk_bound: float = 40 * MB,
) -> MemoryTrace:
    """A 1 Hz memory trace of one of ``STABLE_KINDS``, plus a leak when ``leak_mb_per_min`` > 0."""
    if kind not in _PARTS:
        raise ValueError(f"kind must be one of {STABLE_KINDS}, not {kind!r}")
    rng = np.random.default_rng(seed)
    n = round(hours * 3600)
    times = np.arange(n, dtype=float)
    clean = np.full(n, float(base))
    loads = sessions = None
    for part in _PARTS[kind]:
        if part == "sawtooth":
            clean += sawtooth(rng, n)
        elif part == "steps":
            clean += steps(rng, n)
        elif part == "walk":
            clean += bounded_walk(rng, n, bound=walk_bound)
        elif part == "load":
            sessions, loads = session_load(rng, n)
            clean += loads
    values = clean + noise(rng, n)
    rate = leak_mb_per_min * MB / 60.0
    if rate:
        stop = leak_stop_s if leak_stop_s is not None else np.inf
        values += rate * (np.clip(times, leak_start_s, stop) - leak_start_s)
    return MemoryTrace(
        name=kind if not rate else f"{kind}+leak {leak_mb_per_min:g} MB/min",
        times=times,
        values=values,
        loads=loads,
        sessions=sessions,
        clean=clean,
        leak_rate=rate,
        leak_start_s=leak_start_s if rate else None,
        leak_stop_s=leak_stop_s if rate else None,
        limit=limit,
    )


def noise(rng: np.random.Generator, n: int, sigma: float = 2 * MB) -> np.ndarray:
    """Gaussian jitter, a Student-t tail, and upward spikes of 20-80 MB lasting 1-3 s about every 10 minutes."""
    out = rng.normal(0.0, sigma, n) + 0.5 * MB * rng.standard_t(3, n)
    for start in np.flatnonzero(rng.random(n) < 1 / 600):
        out[start : start + rng.integers(1, 4)] += rng.uniform(20, 80) * MB
    return out


def sawtooth(rng: np.random.Generator, n: int, period=(20.0, 120.0), amplitude=(40 * MB, 120 * MB)) -> np.ndarray:
    """Ramps up and drops back: each cycle draws its period and height (the floor stays put)."""
    out = np.empty(n)
    i = 0
    while i < n:
        length = max(2, round(rng.uniform(*period)))
        height = rng.uniform(*amplitude)
        ramp = np.linspace(0.0, height, length, endpoint=False)
        out[i : i + length] = ramp[: n - i]
        i += length
    return out


def steps(
    rng: np.random.Generator, n: int, per_hour: float = 0.7, size=(16 * MB, 256 * MB), cap: float = 600 * MB
) -> np.ndarray:
    """Plateaus: jumps up at random times (a Poisson process) and stays flat; the fuller the pool (``cap``), the
    likelier the next event releases one of the plateaus instead, so the level stays bounded."""
    out = np.zeros(n)
    level = 0.0
    held: list[float] = []
    for t in np.sort(rng.uniform(0, n, rng.poisson(per_hour * n / 3600))).astype(int):
        if held and rng.random() < level / cap:
            level -= held.pop(rng.integers(len(held)))
        else:
            held.append(rng.uniform(*size))
            level += held[-1]
        out[t:] = level
    return out


def bounded_walk(rng: np.random.Generator, n: int, sigma: float = 0.15 * MB, bound: float = 40 * MB) -> np.ndarray:
    """A random walk (``sigma`` per step) reflected at +-``bound``."""
    walk = np.cumsum(rng.normal(0.0, sigma, n))
    period = 4 * bound
    folded = np.mod(walk + bound, period)
    return np.where(folded < 2 * bound, folded, period - folded) - bound


def session_load(
    rng: np.random.Generator, n: int, lifetime_s: float = 600.0, bytes_per_session=(4 * MB, 12 * MB)
) -> tuple[np.ndarray, np.ndarray]:
    """Active sessions and the bytes they hold; arrivals follow traffic that rises and falls over 2-6 hours."""
    t = np.arange(n)
    phase = rng.uniform(0, 2 * np.pi)
    period = rng.uniform(2, 6) * 3600
    rate = 0.12 * (1.0 + 0.9 * np.sin(2 * np.pi * t / period + phase))
    arrivals = np.repeat(t, rng.poisson(rate))
    departures = arrivals + rng.exponential(lifetime_s, arrivals.size).astype(int) + 1
    size = rng.uniform(*bytes_per_session, arrivals.size)
    active = np.zeros(n + 1)
    held = np.zeros(n + 1)
    np.add.at(active, arrivals, 1)
    np.add.at(held, arrivals, size)
    gone = departures < n
    np.add.at(active, departures[gone], -1)
    np.add.at(held, departures[gone], -size[gone])
    return np.cumsum(active)[:n], np.cumsum(held)[:n]


def latency_series(
    rng: np.random.Generator,
    n: int,
    *,
    median_s: float = 0.8,
    sigma: float = 0.35,
    heavy: bool = False,
    shift_sigma: float = 0.0,
    shift_at: int = 0,
) -> np.ndarray:
    """Request latencies in seconds; from ``shift_at`` on, log-latency moves up by ``shift_sigma`` times ``sigma``.

    ``sigma`` is the robust spread of log-latency (1.4826 * MAD). With ``heavy``, log-latency has a Student-t(3)
    shape scaled to that spread and 1% of requests are stragglers 3-10 times slower.
    """
    if heavy:
        z = rng.standard_t(3, n) / (1.4826 * 0.7649)
        z += np.where(rng.random(n) < 0.01, np.log(rng.uniform(3, 10, n)) / sigma, 0.0)
    else:
        z = rng.normal(0.0, 1.0, n)
    z[shift_at:] += shift_sigma
    return median_s * np.exp(sigma * z)


def output_lengths(
    rng: np.random.Generator, n: int, *, mean: float = 180.0, cv: float = 0.6, max_tokens: int = 512, scale=1.0
) -> np.ndarray:
    """Output lengths in tokens: log-normal with the given mean and CV, times ``scale``, rounded, capped."""
    s2 = np.log1p(cv**2)
    raw = rng.lognormal(np.log(mean) - s2 / 2, np.sqrt(s2), n) * scale
    return np.clip(np.rint(raw), 1, max_tokens).astype(int)


def token_outputs(
    rng: np.random.Generator, lengths: np.ndarray, *, vocab: int = 32_000, zipf: float = 1.3, repeat: float = 0.1
) -> list[np.ndarray]:
    """Token ids for outputs of the given lengths: ids from a Zipf law over the vocabulary (id 0 the most frequent),
    each token repeating the one before it with probability ``repeat``."""
    total = int(np.sum(lengths))
    ids = np.searchsorted(_zipf_cdf(vocab, zipf), rng.random(total), side="right")
    again = rng.random(total) < repeat
    again[np.cumsum(lengths)[:-1] if len(lengths) else []] = False
    idx = np.where(again, 0, np.arange(total))
    ids = ids[np.maximum.accumulate(idx)]
    return np.split(ids, np.cumsum(lengths)[:-1])


@lru_cache(maxsize=8)
def _zipf_cdf(vocab: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, vocab + 1) ** exponent
    return np.cumsum(weights) / weights.sum()
