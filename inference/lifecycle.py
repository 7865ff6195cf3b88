"""Loading, swapping and unloading models on a running engine (mixed into ``Engine``).

A load runs in the caller's thread (HTTP handlers use a worker thread) while the engine keeps serving; the new lane
is installed between two engine steps. The old lane drains: it finishes the requests it holds, then the engine
thread frees it and records what was freed (tensor bytes, RSS and allocator figures before and after).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from inference.errors import CheckpointError, Conflict, NoModel, WorkerError
from inference.lane import Lane, Shared
from inference.loading import LoadProgress, load_runner
from inference.protocol import ConfigError, WorkerConfig
from inference.sessions import SessionStore
from inference.stats import release_memory

log = logging.getLogger(__name__)


class ModelLifecycle:
    """load / swap / unload; expects the attributes ``Engine.__init__`` sets."""

    _config: WorkerConfig
    _lock: threading.RLock
    _lanes: list[Lane]
    _active: Lane | None
    _keys: itertools.count[int]
    _load_lock: threading.Lock
    _wake: threading.Event
    shared: Shared
    sessions: SessionStore
    progress: LoadProgress
    call: Callable[..., Any]
    memory: Callable[[], dict[str, Any]]

    def _new_lane(self, path: str, precision: str, device: str, model_id: str | None, sha256: str | None) -> Lane:
        if not self._load_lock.acquire(blocking=False):
            raise Conflict("another model is being loaded", param="path")
        try:
            runner = load_runner(path, precision, device, model_id, sha256, self.progress)
            self.progress.end()
        except WorkerError as exc:
            self.progress.end(str(exc))
            raise
        except Exception as exc:
            self.progress.end(str(exc))
            raise CheckpointError(path, f"load failed: {exc}") from exc
        finally:
            self._load_lock.release()
        return Lane(runner, next(self._keys), self.shared, self._lock)

    def _install(self, lane: Lane) -> Lane | None:
        """Make ``lane`` the active one (router weights applied); returns the previous active lane."""
        weights = self._config.router_weights
        if lane.runner.supports_router_weights:
            try:
                lane.runner.set_router_weights(weights)
            except ConfigError:
                log.warning("router_weights %s do not fit %s; reset to all 1.0", weights, lane.model_id)
                lane.runner.set_router_weights(None)
                self._config = self._config.updated({"router_weights": None})
        with self._lock:
            old, self._active = self._active, lane
            self._lanes.append(lane)
            if old is not None:
                old.draining = True
        self._wake.set()
        return old

    def load(
        self,
        path: str,
        precision: str = "fp32",
        device: str = "auto",
        model_id: str | None = None,
        sha256: str | None = None,
    ) -> dict[str, Any]:
        """Load a model when none is active (409 otherwise: use swap)."""
        if self._active is not None:
            raise Conflict(f"model {self._active.model_id} is already loaded; use /control/swap", param="path")
        lane = self._new_lane(path, precision, device, model_id, sha256)

        def install_if_free() -> None:
            if self._active is not None:
                raise Conflict(f"model {self._active.model_id} was loaded meanwhile", param="path")
            self._install(lane)

        try:
            self.call(install_if_free)
        except Conflict:
            lane.runner.close()
            raise
        return lane.runner.info

    def swap(
        self,
        path: str,
        precision: str = "fp32",
        device: str = "auto",
        model_id: str | None = None,
        sha256: str | None = None,
    ) -> dict[str, Any]:
        """Load beside the active model, route new requests to it, drain and free the old one."""
        lane = self._new_lane(path, precision, device, model_id, sha256)
        old = self.call(lambda: self._install(lane))
        return {"model": lane.runner.info, "previous": self._wait_retired(old) if old else None}

    def unload(self) -> dict[str, Any]:
        """Stop taking requests, let running ones finish, free the model."""
        with self._lock:
            old, self._active = self._active, None
            if old is None:
                raise Conflict("no model is loaded")
            old.draining = True
        self._wake.set()
        return self._wait_retired(old)

    def _wait_retired(self, lane: Lane) -> dict[str, Any]:
        if not lane.retired.wait(self._config.drain_timeout_s):
            log.warning(
                "%s did not drain within %.0fs; failing its requests", lane.model_id, self._config.drain_timeout_s
            )
            lane.force = True
            self._wake.set()
            if not lane.retired.wait(self._config.drain_timeout_s + 60):
                raise Conflict(f"model {lane.model_id} could not be retired")
        return lane.result

    def _retire_lanes(self) -> bool:
        did = False
        for lane in [x for x in self._lanes if x.draining]:
            dropped = 0
            if lane.force:
                err = NoModel(f"model {lane.model_id} was unloaded before the request finished")
                dropped = lane.fail_waiting(err) + lane.fail(err)
            if lane.busy:
                continue
            before = self.memory()
            freed = lane.runner.weight_bytes() + lane.runner.kv_bytes() + self.sessions.drop_lane(lane.key)
            with self._lock:
                self._lanes.remove(lane)
            lane.runner.close()
            release_memory()
            after = self.memory()
            lane.result = {"id": lane.model_id, "freed_bytes": freed, "drained": not lane.force, "dropped": dropped}
            lane.result |= {f"{k}_before": v for k, v in before.items() if k.endswith("bytes")}
            lane.result |= {f"{k}_after": v for k, v in after.items() if k.endswith("bytes")}
            log.info("retired %s, freed %d tensor bytes", lane.model_id, freed)
            lane.retired.set()
            did = True
        return did
