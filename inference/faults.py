"""Fault injection, for exercising what watches a worker (the leak detector, alerts, restarts, the gateway) on a real
process: leak host memory (and device memory on CUDA) at a steady rate, slow every engine step, fail a share of
requests with a 500 that says why.

Off unless the worker was started with ``--enable-fault-injection`` (``protocol.FAULT_INJECTION_FLAG``); without it
``/control/faults`` answers 404 as any unknown route does. The control plane passes the flag only when its
``WORKER_FAULT_INJECTION`` setting is on (default off; never in production). See docs/worker.md, "Fault injection".
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from inference.protocol import ConfigError

log = logging.getLogger(__name__)

__all__ = ["FaultSettings", "Faults"]

PAGE = 4096
LEAK_TICK_S = 1.0  # the leak grows once a second (a steady slope, not a jump a minute)


@dataclass(frozen=True)
class FaultSettings:
    """What ``POST /control/faults`` sets; every field 0 means no fault."""

    leak_mb_per_min: float = 0.0
    """Host memory (MiB) kept and touched per minute; device memory too when the model runs on CUDA."""
    step_delay_ms: float = 0.0
    """Added to every engine step that has work."""
    fail_percent: float = 0.0
    """Share of ``/v1`` requests answered 500 before they reach the engine."""


BOUNDS: dict[str, tuple[float, float]] = {
    "leak_mb_per_min": (0.0, 10_240.0),
    "step_delay_ms": (0.0, 60_000.0),
    "fail_percent": (0.0, 100.0),
}


def _checked(current: FaultSettings, changes: Mapping[str, Any]) -> FaultSettings:
    unknown = sorted(set(changes) - set(BOUNDS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown fault(s): {', '.join(unknown)}; known: {', '.join(BOUNDS)}")
    values: dict[str, float] = {}
    for name, value in changes.items():
        lo, hi = BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise ConfigError(name, f"{name} must be a number from {lo:g} to {hi:g} (got {value!r})")
        values[name] = float(value)
    return replace(current, **values)


class Faults:
    """The faults of one worker. ``device()`` names the active model's device (``cuda:0``, ``cpu``) or None."""

    def __init__(
        self,
        device: Callable[[], str | None] = lambda: None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = FaultSettings()
        self.device = device
        self.clock, self.sleep = clock, sleep
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._host: list[bytearray] = []
        self._device: list[Any] = []
        self.host_bytes = 0
        self.device_bytes = 0
        self.failed_requests = 0
        self._owed = 0.0  # bytes due but not yet allocated (the leak allocates whole pages)
        self._last = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- control ----------------------------------------------------------------------------------------------------
    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply ``changes`` (a 400 naming the field for an unknown one or a value out of bounds); returns the state.
        Setting the leak to 0 stops it growing; what leaked stays until ``reset``."""
        with self._lock:
            self._accrue()
            self.settings = _checked(self.settings, changes)
        log.warning("fault injection: %s", self.settings)
        if self.settings.leak_mb_per_min > 0:
            self.start()
        return self.to_dict()

    def reset(self) -> dict[str, Any]:
        """No faults, and the leaked memory freed."""
        with self._lock:
            self.settings = FaultSettings()
            self._host.clear()
            self._device.clear()
            self.host_bytes = self.device_bytes = 0
            self._owed = 0.0
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.settings),
            "leaked_host_bytes": self.host_bytes,
            "leaked_device_bytes": self.device_bytes,
            "failed_requests": self.failed_requests,
        }

    # --- the leak ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Run the leak in its own thread (idempotent): it grows whether or not the worker serves requests."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._last = self.clock()
            self._thread = threading.Thread(target=self._run, name="fault-leak", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(LEAK_TICK_S):
            try:
                self.leak_tick()
            except Exception:  # out of memory, a device gone: report it, keep the worker up
                log.exception("fault injection: the leak could not grow")

    def _accrue(self) -> None:
        now = self.clock()
        self._owed += self.settings.leak_mb_per_min * 2**20 * max(0.0, now - self._last) / 60.0
        self._last = now

    def leak_tick(self) -> int:
        """Allocate what the leak owes since the last tick (whole pages, each touched so it is resident); returns
        the bytes added to the host leak."""
        with self._lock:
            self._accrue()
            size = int(self._owed) // PAGE * PAGE
            if size <= 0:
                return 0
            self._owed -= size
            block = bytearray(size)
            block[::PAGE] = b"\x01" * len(range(0, size, PAGE))  # touch every page: RSS grows, not just the mapping
            self._host.append(block)
            self.host_bytes += size
            device = self.device()
        if device is not None and device.startswith("cuda"):
            self._leak_device(device, size)
        return size

    def _leak_device(self, device: str, size: int) -> None:
        import torch

        tensor = torch.ones(size, dtype=torch.uint8, device=device)
        with self._lock:
            self._device.append(tensor)
            self.device_bytes += size

    # --- the engine and the requests --------------------------------------------------------------------------------
    def slow_step(self) -> None:
        """Called before each engine step that has work."""
        delay = self.settings.step_delay_ms
        if delay > 0:
            self.sleep(delay / 1000.0)

    def fail_request(self) -> str | None:
        """The message of an injected failure for this request, or None to serve it."""
        share = self.settings.fail_percent
        if share <= 0 or self.rng.random() * 100.0 >= share:
            return None
        with self._lock:
            self.failed_requests += 1
        return f"injected fault: this request was failed on purpose (fail_percent={share:g})"
