"""A fake launcher, processes and worker control API for the WorkerPool: no real process, time moved by hand."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane.workers.pool import ControlError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeProcess:
    pid: int
    argv: list[str]
    env: dict[str, str]
    code: int | None = None
    terminated: bool = False

    def poll(self) -> int | None:
        return self.code

    def terminate(self) -> None:
        self.terminated = True
        self.code = 0

    def kill(self) -> None:
        self.code = -9

    def wait(self, timeout: float | None = None) -> int:
        return self.code if self.code is not None else 0


@dataclass
class FakeWorkerState:
    """What a fake worker at one URL answers."""

    ready: bool = False
    healthy: bool = True
    inflight: int = 0
    refuse_config: str = ""
    config_patches: list[dict] = field(default_factory=list)
    swaps: list[tuple] = field(default_factory=list)
    progress: dict[str, Any] | None = None


class FakeControl:
    def __init__(self, state: FakeWorkerState) -> None:
        self.state = state
        self.closed = False

    def ready(self) -> None:
        if not self.state.ready:
            raise ControlError("no model loaded yet", 503)

    def health(self) -> None:
        if not self.state.healthy:
            raise ControlError("worker unavailable: connection refused")

    def progress(self) -> dict[str, Any] | None:
        return self.state.progress

    def inflight(self) -> int:
        return self.state.inflight

    def patch_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        if self.state.refuse_config:
            raise ControlError(self.state.refuse_config, 400, {"error": self.state.refuse_config})
        self.state.config_patches.append(changes)
        return changes

    def swap(self, path: str, precision: str, *, sha256: str | None, model_id: str) -> dict[str, Any]:
        self.state.swaps.append((path, precision))
        return {"model": model_id}

    def close(self) -> None:
        self.closed = True


class FakeLauncher:
    """Launches fake processes; ``workers`` maps each worker's URL to its fake state (created on launch)."""

    def __init__(self) -> None:
        self.processes: list[FakeProcess] = []
        self.pids = itertools.count(4000)
        self.states: dict[str, FakeWorkerState] = {}

    def launch(self, argv: list[str], env: dict[str, str], log_path: Path) -> FakeProcess:
        process = FakeProcess(next(self.pids), argv, env)
        self.processes.append(process)
        return process

    def control(self, url: str) -> FakeControl:
        return FakeControl(self.states.setdefault(url, FakeWorkerState()))

    def state(self, worker) -> FakeWorkerState:
        return self.states.setdefault(worker.url, FakeWorkerState())


def ports():
    counter = itertools.count(9100)
    return lambda host: next(counter)
