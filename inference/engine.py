"""The engine: a background thread that steps every loaded model's batch, plus load / swap / unload and stats.

Threads: HTTP handlers call ``submit`` (quick: tokenize, validate, enqueue) and receive events through a sink; the
engine thread runs forward passes (torch releases the GIL); control operations that touch the model (router weights)
run inside the engine thread between steps via ``call``. ``swap`` loads the new model beside the old one in the
caller's thread, switches new requests to it, lets the old one finish its requests, then frees it
(``inference.lifecycle``).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from inference.batcher import GenerationRequest, Sequence, Sink
from inference.errors import NoModel, Overloaded, Unavailable
from inference.faults import Faults
from inference.lane import Hooks, Lane, Observer, Shared
from inference.lifecycle import ModelLifecycle
from inference.loading import LoadProgress
from inference.perplexity import perplexity as to_perplexity
from inference.protocol import ConfigError, WorkerConfig, check_router_weights
from inference.sessions import SessionStore
from inference.stats import EngineCounters, release_memory, rss_bytes, torch_memory

log = logging.getLogger(__name__)
T = TypeVar("T")


class Engine(ModelLifecycle):
    """Serves generation requests on the loaded model(s) with continuous batching."""

    def __init__(self, config: WorkerConfig | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config or WorkerConfig()
        self.clock = clock
        self._lock = threading.RLock()
        self._lanes: list[Lane] = []
        self._active: Lane | None = None
        self._keys = itertools.count(1)
        self.sessions = SessionStore(lambda: self._config, clock)
        self.counters = EngineCounters()
        self.shared = Shared(self.sessions, self.counters, clock, Observer(), Hooks())
        self.progress = LoadProgress()
        self._load_lock = threading.Lock()
        self._control: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy_since: float | None = None
        self._started = clock()
        self._last_progress = clock()
        self._last_sweep = clock()
        self.faults: Faults | None = None  # set when the worker runs with fault injection enabled

    # -- lifecycle ----------------------------------------------------------------------------------------------

    @property
    def config(self) -> WorkerConfig:
        return self._config

    @property
    def observer(self) -> Observer:
        return self.shared.observer

    @observer.setter
    def observer(self, value: Observer) -> None:
        self.shared.observer = value

    @property
    def hooks(self) -> Hooks:
        return self.shared.hooks

    def start(self) -> Engine:
        """Start the engine thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread; requests still queued or running get an error; models are freed."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            lanes, self._lanes, self._active = list(self._lanes), [], None
        for lane in lanes:
            err = NoModel("the worker is shutting down")
            lane.fail_waiting(err)
            lane.fail(err)
            lane.runner.close()
        self.sessions.expire(0.0)
        release_memory()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self._last_progress = self.clock()  # awake: an idle wait is not a lack of progress
            try:
                did, hold = self.step()
            except Exception:
                log.exception("engine iteration failed")
                did, hold = False, None
            self._last_progress = self.clock()
            if not did:
                self._wake.wait(self._idle_timeout(hold))

    def _idle_timeout(self, hold: float | None) -> float:
        to_sweep = self._config.session_sweep_interval_s - (self.clock() - self._last_sweep)
        return max(0.0005, min(to_sweep, hold if hold is not None else math.inf))

    def step(self) -> tuple[bool, float | None]:
        """One iteration: control operations, session sweep, one step per lane, retire drained lanes."""
        did = self._run_control()
        self._maybe_sweep()
        hold: float | None = None
        for lane in list(self._lanes):
            self._busy_since = self.clock()
            try:
                if self.faults is not None and lane.busy:
                    self.faults.slow_step()
                worked, lane_hold = lane.step(self._config)
            finally:
                self._busy_since = None
            did = did or worked
            if lane_hold is not None:
                hold = lane_hold if hold is None else min(hold, lane_hold)
        return self._retire_lanes() or did, hold

    def call(self, fn: Callable[[], T], timeout: float = 60.0) -> T:
        """Run ``fn`` in the engine thread between two steps and return its result (or raise its exception).

        If the engine does not get to it within ``timeout`` (a stuck step), it is withdrawn and a 503 raised."""
        if self._thread is None or not self._thread.is_alive() or threading.current_thread() is self._thread:
            return fn()
        fut: Future[T] = Future()
        self._control.append((fn, fut))
        self._wake.set()
        try:
            return fut.result(timeout)
        except FutureTimeout:
            if fut.cancel():
                raise Unavailable(f"the engine did not respond within {timeout:.0f}s; nothing was changed") from None
            return fut.result()

    def _run_control(self) -> bool:
        did = False
        while self._control:
            fn, fut = self._control.popleft()
            did = True
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)
        return did

    # -- requests -------------------------------------------------------------------------------------------------

    def active_model(self) -> dict[str, Any] | None:
        """Info of the model new requests go to."""
        lane = self._active
        return lane.runner.info if lane is not None else None

    def model_ids(self) -> list[str]:
        """Ids a request may name: the active model, then models still finishing their requests."""
        with self._lock:
            lanes = ([self._active] if self._active else []) + [x for x in self._lanes if x is not self._active]
        return [lane.model_id for lane in lanes]

    def queue_depth(self) -> int:
        with self._lock:
            return sum(len(lane.waiting) for lane in self._lanes)

    def submit(self, req: GenerationRequest, sink: Sink) -> Sequence:
        """Queue a request on the active model; raises NoModel, Overloaded, InvalidRequest or Conflict at once."""
        with self._lock:
            lane = self._active
            if lane is None:
                raise NoModel("no model is loaded")
            if self.queue_depth() >= self._config.max_queue:
                self.counters.add(rejected_total=1)
                self.observer.rejected()
                raise Overloaded(f"the queue is full ({self._config.max_queue} requests waiting); retry later")
            seq = lane.build(req, sink, self._config)
            lane.waiting.append(seq)
        self._wake.set()
        return seq

    def cancel(self, seq: Sequence) -> None:
        """Stop a request (client gone); it leaves the batch at the next step."""
        seq.cancelled = True
        self._wake.set()

    # -- live config, sessions, scoring --------------------------------------------------------------------------

    def update_config(self, changes: dict[str, Any]) -> WorkerConfig:
        """Validate and apply config changes between two steps; router weights are checked against the model."""

        def apply() -> WorkerConfig:
            new = self._config.updated(changes)
            lane = self._active
            if "router_weights" in changes and lane is not None:
                if not lane.runner.supports_router_weights and new.router_weights is not None:
                    raise ConfigError("router_weights", f"model {lane.model_id} has no router (not an MoE model)")
                if lane.runner.supports_router_weights:
                    if new.router_weights is not None:
                        cfg = lane.runner.info["config"]
                        check_router_weights(new.router_weights, cfg["n_experts"], cfg["top_k"])
                    lane.runner.set_router_weights(new.router_weights)
                    lane.runner.reset_expert_counts()
            self._config = new
            self.sessions.enforce()
            return new

        return self.call(apply)

    def reset_expert_counts(self) -> None:
        """Zero the activation counters of the active model."""
        lane = self._active
        if lane is not None:
            self.call(lane.runner.reset_expert_counts)

    def memory(self) -> dict[str, Any]:
        """RSS and allocator figures (measured now)."""
        with self._lock:
            lanes = list(self._lanes)
        tensors = sum(x.runner.weight_bytes() + x.runner.kv_bytes() for x in lanes if x.runner.model is not None)
        device = lanes[-1].runner.device if lanes else None
        return {"rss_bytes": rss_bytes(), **torch_memory(device, tensors + self.sessions.kv_bytes)}

    def _freeing(self, fn: Callable[[], tuple[int, int]]) -> dict[str, Any]:
        before = self.memory()
        count, freed = fn()
        release_memory()
        after = self.memory()
        out = {"count": count, "freed_bytes": freed}
        out |= {f"{k}_before": v for k, v in before.items() if k.endswith("bytes")}
        out |= {f"{k}_after": v for k, v in after.items() if k.endswith("bytes")}
        return out

    def expire_sessions(self, idle_s: float | None = None) -> dict[str, Any]:
        """Expire idle sessions now: ``{"expired", "freed_bytes", ...measured memory before/after}``."""
        out = self._freeing(lambda: self.sessions.expire(idle_s))
        return {"expired": out.pop("count"), **out}

    def delete_session(self, sid: str) -> dict[str, Any]:
        """Delete one session (404 when unknown)."""
        out = self._freeing(lambda: (1, self.sessions.delete(sid)))
        return {"deleted": sid, **{k: v for k, v in out.items() if k != "count"}}

    def _maybe_sweep(self) -> None:
        now = self.clock()
        interval = self._config.session_sweep_interval_s
        if now - self._last_sweep < interval:
            return
        self._last_sweep = now
        count, freed = self.sessions.expire()
        for lane in list(self._lanes):
            if not lane.busy and now - lane.last_active > interval:
                lane.runner.trim()
        if count:
            release_memory()
            log.info("expired %d idle sessions, freed %d KV-cache bytes", count, freed)

    def perplexity(self, texts: list[str]) -> dict[str, Any]:
        """Perplexity of ``texts`` (each ``<bos> text <eos>``) through the active model."""
        lane = self._active
        if lane is None:
            raise NoModel("no model is loaded")
        tok = lane.runner.tokenizer
        lists = [tok.encode(t) + ([tok.eos_id] if tok.eos_id is not None else []) for t in texts]
        nll, count = lane.runner.score(lists)
        return {"perplexity": round(to_perplexity(nll, count), 6), "tokens": count, "model": lane.model_id}

    # -- observation ----------------------------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, body): unhealthy when the thread died or a step has run past ``stall_timeout_s``."""
        now, stall = self.clock(), self._config.stall_timeout_s
        lane = self._active
        body: dict[str, Any] = {
            "model": lane.model_id if lane else None,
            "uptime_s": round(now - self._started, 3),
            "last_progress_age_s": round(now - self._last_progress, 3),
            "running": sum(len(x.runner.seqs) for x in list(self._lanes)),
            "waiting": self.queue_depth(),
            "loading": self.progress.phase == "loading",
        }
        busy = self._busy_since
        if self._thread is None or not self._thread.is_alive():
            return False, {"status": "error", "reason": "the engine thread is not running", **body}
        if busy is not None and now - busy > stall:
            reason = f"an engine step has been running for {now - busy:.1f}s (stall_timeout_s={stall})"
            return False, {"status": "stalled", "reason": reason, **body}
        if (body["running"] or body["waiting"]) and now - self._last_progress > stall:
            reason = f"no engine progress for {now - self._last_progress:.1f}s with work pending"
            return False, {"status": "stalled", "reason": reason, **body}
        return True, {"status": "ok", **body}

    def lanes(self) -> list[Lane]:
        """Loaded lanes (active last when swapping)."""
        with self._lock:
            return list(self._lanes)

    def active_device(self) -> str | None:
        """The device of the model new requests go to (``cpu``, ``cuda:0``), None without one."""
        lane = self._active
        return str(lane.runner.device) if lane is not None else None

    def active_lane(self) -> Lane | None:
        return self._active

    def uptime_s(self) -> float:
        return self.clock() - self._started
