"""Measured figures: process and torch memory, and the engine's running counters."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time
from collections import Counter, deque
from typing import Any

import psutil
import torch

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_libc: Any = None


def rss_bytes() -> int:
    """Resident set size of this process."""
    return psutil.Process().memory_info().rss


def malloc_trim() -> bool:
    """Ask glibc to return freed heap memory to the OS; False where that is not available."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    if not _libc or not hasattr(_libc, "malloc_trim"):
        return False
    return bool(_libc.malloc_trim(0))


def release_memory() -> None:
    """Collect garbage, empty the CUDA cache and trim the C heap, so freed tensors leave the process."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    malloc_trim()


def torch_memory(device: torch.device | None, tensor_bytes: int) -> dict[str, Any]:
    """Allocator figures: on CUDA from the caching allocator; on the CPU, the bytes our tensors hold.

    The CPU allocator keeps no cache (freed tensors go straight back to malloc), so there reserved == allocated.
    """
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        return {
            "torch_allocated_bytes": torch.cuda.memory_allocated(device),
            "torch_reserved_bytes": torch.cuda.memory_reserved(device),
            "torch_memory_source": "cuda caching allocator",
        }
    return {
        "torch_allocated_bytes": tensor_bytes,
        "torch_reserved_bytes": tensor_bytes,
        "torch_memory_source": "cpu: bytes of the worker's tensors (weights + KV caches)",
    }


def bucket(n: int) -> int:
    """Smallest histogram bucket >= n."""
    return next((b for b in BATCH_BUCKETS if n <= b), BATCH_BUCKETS[-1])


class EngineCounters:
    """Counters shown by ``/control/stats`` (thread-safe)."""

    def __init__(self, window_s: float = 10.0) -> None:
        self._lock = threading.Lock()
        self.window_s = window_s
        self.requests_total = 0
        self.errors_total = 0
        self.rejected_total = 0
        self.cancelled_total = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.batch_hist: Counter[int] = Counter()
        self._tokens: deque[tuple[float, int]] = deque()

    def batch(self, size: int, now: float) -> None:
        with self._lock:
            self.batch_hist[bucket(size)] += 1
            self.generation_tokens_total += size
            self._tokens.append((now, size))
            while self._tokens and self._tokens[0][0] < now - self.window_s:
                self._tokens.popleft()

    def tokens_per_s(self, now: float) -> float:
        """Generated tokens per second over the last ``window_s`` seconds."""
        with self._lock:
            recent = sum(n for t, n in self._tokens if t >= now - self.window_s)
        return round(recent / self.window_s, 2)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def to_dict(self, now: float) -> dict[str, Any]:
        with self._lock:
            hist = {str(b): self.batch_hist.get(b, 0) for b in BATCH_BUCKETS if b <= max(self.batch_hist, default=1)}
            out = {
                "requests_total": self.requests_total,
                "errors_total": self.errors_total,
                "rejected_total": self.rejected_total,
                "cancelled_total": self.cancelled_total,
                "prompt_tokens_total": self.prompt_tokens_total,
                "generation_tokens_total": self.generation_tokens_total,
                "batch_size_histogram": hist,
            }
        out["tokens_per_s"] = self.tokens_per_s(now)
        return out


def wall_time() -> float:
    """Seconds since the epoch (for timestamps shown to people)."""
    return time.time()
