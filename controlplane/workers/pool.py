"""The WorkerPool: the worker processes of one node, each under a key (``deployment:3``, ``canary:7``).

It spawns a worker (through a ``Launcher``), probes it (ready while it loads its model, then healthy), restarts a
failed one only when its backoff allows (exponential, reset after a worker stayed healthy for a while), promotes a
new worker into an old one's place, and retires the old one: after a grace period in which the gateway stops
routing to it, it finishes the requests it holds, then it is stopped. Every outcome is returned to the caller, who
records it; the pool itself knows nothing of deployments, rollouts or the database.

The supervisor (a deployment's worker) and the canaries (a rollout's worker) both use it. Tests drive it with a
fake clock, a fake launcher and a fake control API; the real process is covered by the end-to-end tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

__all__ = [
    "Backoff",
    "Control",
    "ControlError",
    "Launcher",
    "Outcome",
    "PoolSettings",
    "SubprocessLauncher",
    "Worker",
    "WorkerPool",
    "WorkerSpec",
]

LOG_TAIL_LINES = 40
LOAD_FAILED = "failed"  # ``progress()["phase"]`` of a worker whose model load failed (inference.protocol.Phase.FAILED)


class Process(Protocol):
    """What the pool needs of a process (``subprocess.Popen`` has it)."""

    pid: int

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class Launcher(Protocol):
    def launch(self, argv: list[str], env: dict[str, str], log_path: Path) -> Process: ...


class ControlError(Exception):
    """The worker did not answer, or refused: ``status`` is its HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0, body: Any = None) -> None:
        super().__init__(message)
        self.message, self.status, self.body = message, status, body


class Control(Protocol):
    """A worker's control API as the pool and its users need it (``launch.ClientControl`` adapts the real one)."""

    def ready(self) -> None: ...

    def health(self) -> None: ...

    def progress(self) -> dict[str, Any] | None:
        """The model load under way (``phase`` loading) or failed (``phase`` failed, with ``error``); None when
        there is none to report."""
        ...

    def inflight(self) -> int: ...

    def patch_config(self, changes: dict[str, Any]) -> dict[str, Any]: ...

    def swap(self, path: str, precision: str, *, sha256: str | None, model_id: str) -> dict[str, Any]: ...

    def close(self) -> None: ...


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the supervising thread dies (Linux only)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class SubprocessLauncher:
    """Real processes: their own session, output to a log file, SIGTERM when the control plane's thread dies."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def launch(self, argv: list[str], env: dict[str, str], log_path: Path) -> Process:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv[:4])} …\n".encode())
            return subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PoolSettings:
    start_timeout_s: float = 300.0
    health_interval_s: float = 2.0
    health_failures: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    backoff_reset_s: float = 120.0
    retire_grace_s: float = 6.0  # the gateway's route cache plus a margin: no new request reaches a retiring worker
    drain_timeout_s: float = 300.0  # a retiring worker that still has requests after this is stopped anyway


@dataclass(frozen=True)
class WorkerSpec:
    """How to start one worker: its command for a given port, its environment, and what it will serve."""

    name: str  # the log file's name
    command: Callable[[int], list[str]]
    env: dict[str, str]
    control: Callable[[str], Control]  # the worker's control API at its URL
    revision: int
    config: dict[str, Any] = field(default_factory=dict)
    model_key: tuple[Any, ...] = ()
    host: str = "127.0.0.1"


class State(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RETIRING = "retiring"


@dataclass
class Worker:
    key: str
    spec: WorkerSpec
    port: int
    process: Process
    log_path: Path
    started: float
    started_wall: float = field(default_factory=time.time)
    state: State = State.STARTING
    healthy_since: float | None = None
    health_failures: int = 0
    last_health_check: float = 0.0
    revision: int = 0
    model_key: tuple[Any, ...] = ()
    retire_at: float = 0.0
    retire_deadline: float = 0.0
    control: Control | None = None

    @property
    def url(self) -> str:
        return f"http://{self.spec.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        return self.process.poll()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 16_384))
                return b"\n".join(handle.read().splitlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""


@dataclass
class Backoff:
    """Exponential restart delay of one key; reset once a worker has stayed healthy for a while."""

    base_s: float
    max_s: float
    attempts: int = 0
    not_before: float = 0.0

    def next_delay(self) -> float:
        delay = min(self.max_s, self.base_s * (2**self.attempts))
        self.attempts += 1
        return delay


class Change(StrEnum):
    """What ``WorkerPool.check`` found."""

    STARTING = "starting"  # still loading its model (``progress`` says how far)
    READY = "ready"  # just became ready: the caller applies its config and routes to it
    RUNNING = "running"  # healthy, nothing new
    EXITED = "exited"  # the process ended by itself
    UNHEALTHY = "unhealthy"  # stopped answering, or never became ready in time; it was stopped


@dataclass(frozen=True)
class Outcome:
    change: Change
    worker: Worker
    reason: str = ""
    exit_code: int | None = None
    log_tail: str = ""
    retry_in_s: float = 0.0
    progress: dict[str, Any] | None = None
    load_error: str = ""  # the worker reported that its model failed to load (it will not load on a retry either)

    @property
    def failed(self) -> bool:
        return self.change in (Change.EXITED, Change.UNHEALTHY)


class WorkerPool:
    def __init__(
        self,
        launcher: Launcher,
        *,
        settings: PoolSettings | None = None,
        log_dir: Path,
        clock: Callable[[], float] = time.monotonic,
        port_for: Callable[[str], int] = free_port,
    ) -> None:
        self.launcher = launcher
        self.settings = settings or PoolSettings()
        self.log_dir = log_dir
        self.clock = clock
        self.port_for = port_for
        self.workers: dict[str, Worker] = {}
        self.retiring: list[Worker] = []
        self.backoff: dict[str, Backoff] = {}

    # --- starting -------------------------------------------------------------------------------------------------
    def get(self, key: str) -> Worker | None:
        return self.workers.get(key)

    def due(self, key: str) -> bool:
        """May a worker for ``key`` start now (its backoff after a failure has passed)?"""
        backoff = self.backoff.get(key)
        return backoff is None or self.clock() >= backoff.not_before

    def start(self, key: str, spec: WorkerSpec) -> Worker:
        if key in self.workers:
            raise RuntimeError(f"{key} has a worker already (pid {self.workers[key].pid})")
        port = self.port_for(spec.host)
        log_path = self.log_dir / f"{spec.name}.log"
        process = self.launcher.launch(spec.command(port), spec.env, log_path)
        worker = Worker(key, spec, port, process, log_path, self.clock(), revision=spec.revision)
        worker.model_key = spec.model_key
        self.workers[key] = worker
        logger.info("%s: started pid %s on port %s", key, process.pid, port)
        return worker

    @staticmethod
    def control(worker: Worker) -> Control:
        """The worker's control API (one client, kept with the worker)."""
        if worker.control is None:
            worker.control = worker.spec.control(worker.url)
        return worker.control

    # --- watching -------------------------------------------------------------------------------------------------
    def check(self, key: str) -> Outcome | None:
        """Probe the worker under ``key``; a failed one is stopped, removed and its next start delayed."""
        worker = self.workers.get(key)
        if worker is None:
            return None
        code = worker.exit_code()
        if code is not None:
            return self._failed(worker, Change.EXITED, f"the worker exited with code {code}", code)
        if worker.state == State.STARTING:
            return self._check_starting(worker)
        return self._check_health(worker)

    def _check_starting(self, worker: Worker) -> Outcome:
        control = self.control(worker)
        try:
            control.ready()
        except ControlError as exc:
            waited = self.clock() - worker.started
            if waited > self.settings.start_timeout_s:
                reason = f"not ready {self.settings.start_timeout_s:.0f} s after start: {exc}"
                return self._failed(worker, Change.UNHEALTHY, reason)
            try:
                progress = control.progress()
            except ControlError:
                progress = None  # not answering yet: still starting up
            if progress is not None and progress.get("phase") == LOAD_FAILED:
                # The worker answers but its model will never load (a corrupt artifact, too little memory): fail now
                # with its reason instead of waiting out the start timeout.
                error = str(progress.get("error") or "unknown error")
                outcome = self._failed(worker, Change.UNHEALTHY, f"the model failed to load: {error}")
                return replace(outcome, load_error=error)
            return Outcome(Change.STARTING, worker, progress=progress)
        worker.state = State.RUNNING
        worker.healthy_since = worker.last_health_check = self.clock()
        return Outcome(Change.READY, worker)

    def _check_health(self, worker: Worker) -> Outcome:
        now = self.clock()
        if now - worker.last_health_check < self.settings.health_interval_s:
            return Outcome(Change.RUNNING, worker)
        worker.last_health_check = now
        try:
            self.control(worker).health()
        except ControlError as exc:
            worker.health_failures += 1
            logger.warning("%s: health check failed (%d): %s", worker.key, worker.health_failures, exc)
            if worker.health_failures >= self.settings.health_failures:
                reason = f"/health failed {worker.health_failures} times in a row: {exc}"
                return self._failed(worker, Change.UNHEALTHY, reason)
            return Outcome(Change.RUNNING, worker)
        worker.health_failures = 0
        if worker.healthy_since is not None and now - worker.healthy_since > self.settings.backoff_reset_s:
            self.backoff.pop(worker.key, None)
        return Outcome(Change.RUNNING, worker)

    def _failed(self, worker: Worker, change: Change, reason: str, code: int | None = None) -> Outcome:
        tail = worker.log_tail()
        if code is None:
            code = self._terminate(worker)
        self.workers.pop(worker.key, None)
        delay = self.schedule_retry(worker.key)
        return Outcome(change, worker, reason, code, tail, delay)

    def schedule_retry(self, key: str) -> float:
        """Delay the next start of ``key`` by its growing backoff; returns the delay in seconds."""
        s = self.settings
        backoff = self.backoff.setdefault(key, Backoff(s.backoff_base_s, s.backoff_max_s))
        delay = backoff.next_delay()
        backoff.not_before = self.clock() + delay
        return delay

    # --- replacing, draining, stopping ----------------------------------------------------------------------------
    def promote(self, new_key: str, key: str) -> Worker | None:
        """Put the (ready) worker under ``new_key`` in ``key``'s place; the worker it replaces retires (it finishes
        what it holds after the grace period, then stops). Returns the retired worker."""
        worker = self.workers.pop(new_key)
        old = self.workers.get(key)
        worker.key = key
        self.workers[key] = worker
        self.backoff.pop(new_key, None)
        if old is not None and old is not worker:
            self.retire(old)
        return old

    def retire(self, worker: Worker) -> None:
        """Stop routing-wise now, stop the process once it has no requests (at the latest after the drain timeout)."""
        if self.workers.get(worker.key) is worker:
            self.workers.pop(worker.key)
        worker.state = State.RETIRING
        now = self.clock()
        worker.retire_at = now + self.settings.retire_grace_s
        worker.retire_deadline = worker.retire_at + self.settings.drain_timeout_s
        self.retiring.append(worker)

    def step_retiring(self) -> list[tuple[Worker, int | None]]:
        """Stop the retiring workers whose grace has passed and who hold no requests; returns them with exit codes."""
        done = []
        now = self.clock()
        for worker in list(self.retiring):
            if now < worker.retire_at:
                continue
            if worker.exit_code() is None and now < worker.retire_deadline and self._busy(worker):
                continue
            self.retiring.remove(worker)
            done.append((worker, self._terminate(worker)))
        return done

    def _busy(self, worker: Worker) -> bool:
        try:
            return self.control(worker).inflight() > 0
        except ControlError:
            return False  # not answering: nothing to wait for

    def stop(self, key: str) -> Worker | None:
        """Stop the worker under ``key`` now (SIGTERM: it finishes its requests within its own drain timeout)."""
        worker = self.workers.pop(key, None)
        if worker is not None:
            self._terminate(worker)
        return worker

    def stop_all(self) -> None:
        for key in list(self.workers):
            self.stop(key)
        for worker in self.retiring:
            self._terminate(worker)
        self.retiring.clear()

    def _terminate(self, worker: Worker, timeout: float = 15.0) -> int | None:
        """SIGTERM (the worker drains and exits), then SIGKILL if it has not exited within ``timeout``."""
        if worker.control is not None:
            worker.control.close()
            worker.control = None
        process = worker.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        return process.poll()
