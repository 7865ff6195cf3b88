"""Conversations that keep their KV cache between turns, with idle expiry and hard caps.

A session remembers its transcript (the text the model has seen) and, between turns, a compact copy of its KV
cache plus the token ids that cache covers. The next turn reuses the longest common prefix of those ids and only
prefills the rest. While a turn runs, the cache lives in the runner's batch and the session is ``busy``.

Memory can never grow without bound: past ``max_sessions`` the least recently used idle session is evicted, and
past ``max_session_kv_bytes`` the least recently used idle sessions lose their KV cache (they keep the transcript,
so their next turn simply prefills again). Expiring or deleting a session drops its tensors.
"""

from __future__ import annotations

import heapq
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference.errors import Conflict, InvalidRequest, NotFound, Overloaded
from inference.protocol import WorkerConfig

SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def check_session_id(value: Any, param: str = "session_id") -> str:
    """A session id is 1-128 characters of letters, digits and ``._:-``."""
    if not isinstance(value, str) or not SESSION_ID.match(value):
        raise InvalidRequest(f"{param} must be 1-128 characters of letters, digits and ._:- (got {value!r})", param)
    return value


@dataclass
class Session:
    """One conversation."""

    id: str
    created_at: float
    last_used: float
    last_used_wall: float
    transcript: str = ""
    kv: Any = None
    kv_tokens: list[int] = field(default_factory=list)
    kv_bytes: int = 0
    lane: int | None = None
    turns: int = 0
    busy: bool = False
    truncations: int = 0

    def to_dict(self, now: float) -> dict[str, Any]:
        """The shape ``GET /control/sessions`` lists."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "last_used_at": self.last_used_wall,
            "idle_s": 0.0 if self.busy else round(now - self.last_used, 3),
            "turns": self.turns,
            "tokens": len(self.kv_tokens),
            "kv_cache_bytes": self.kv_bytes,
            "busy": self.busy,
        }


class SessionStore:
    """Thread-safe map of sessions in least-recently-used order."""

    def __init__(self, config: Callable[[], WorkerConfig], clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.RLock()
        self.kv_bytes = 0
        self.expired_total = 0
        self.evicted_total = 0
        self.kv_dropped_total = 0
        self.freed_bytes_total = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def checkout(self, sid: str) -> Session:
        """The session for a new turn (created if unknown), marked busy; a busy one is a 409."""
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                self._make_room_for_one()
                now = self._clock()
                session = Session(sid, time.time(), now, time.time())
                self._sessions[sid] = session
            elif session.busy:
                raise Conflict(f"session {sid} is already running a request", param="session_id")
            session.busy = True
            self._sessions.move_to_end(sid)
            return session

    def transcript(self, sid: str) -> str:
        """The text a session has seen so far ("" for an unknown session)."""
        with self._lock:
            session = self._sessions.get(sid)
            return session.transcript if session is not None else ""

    def take_kv(self, session: Session) -> Any:
        """Hand the session's KV cache to the engine for a turn (the session stops holding it)."""
        with self._lock:
            kv, session.kv = session.kv, None
            self.kv_bytes -= session.kv_bytes
            session.kv_bytes = 0
            return kv

    def checkin(self, session: Session, update: dict[str, Any]) -> None:
        """End of a turn: store transcript/kv/kv_tokens/kv_bytes/lane from ``update`` and enforce the caps."""
        with self._lock:
            session.busy = False
            session.last_used, session.last_used_wall = self._clock(), time.time()
            if self._sessions.get(session.id) is not session:
                return  # deleted while the turn ran: keep nothing
            for key, value in update.items():
                setattr(session, key, value)
            self.kv_bytes += session.kv_bytes
            self._enforce_caps()

    def release(self, session: Session) -> None:
        """A turn failed or was refused: the session is idle again (its KV cache, if taken, is gone)."""
        with self._lock:
            session.busy = False
            session.kv_tokens = [] if session.kv is None else session.kv_tokens

    def _drop(self, session: Session) -> int:
        freed = session.kv_bytes
        self.kv_bytes -= freed
        session.kv, session.kv_tokens, session.kv_bytes = None, [], 0
        self.freed_bytes_total += freed
        return freed

    def _idle_lru(self) -> Session | None:
        return next((s for s in self._sessions.values() if not s.busy), None)

    def _make_room_for_one(self) -> None:
        while len(self._sessions) >= self._config().max_sessions:
            victim = self._idle_lru()
            if victim is None:
                raise Overloaded("session limit reached and every session is busy", retry_after=1)
            self._drop(victim)
            del self._sessions[victim.id]
            self.evicted_total += 1

    def _enforce_caps(self) -> None:
        cfg = self._config()
        while len(self._sessions) > cfg.max_sessions and (victim := self._idle_lru()) is not None:
            self._drop(victim)
            del self._sessions[victim.id]
            self.evicted_total += 1
        if self.kv_bytes <= cfg.max_session_kv_bytes:
            return  # the common case: nothing to drop, and no walk over every session on every turn
        for victim in list(self._sessions.values()):
            if self.kv_bytes <= cfg.max_session_kv_bytes:
                break
            if not victim.busy and victim.kv is not None:
                self._drop(victim)
                self.kv_dropped_total += 1

    def delete(self, sid: str) -> int:
        """Remove a session now (a running turn finishes but is not stored); returns the KV bytes freed."""
        with self._lock:
            session = self._sessions.pop(sid, None)
            if session is None:
                raise NotFound(f"no session {sid}", param="session_id")
            return self._drop(session)

    def expire(self, idle_s: float | None = None) -> tuple[int, int]:
        """Remove idle sessions unused for ``idle_s`` (default: session_timeout_s); returns (count, bytes freed)."""
        limit = self._config().session_timeout_s if idle_s is None else idle_s
        now, count, freed = self._clock(), 0, 0
        with self._lock:
            for session in list(self._sessions.values()):
                if not session.busy and now - session.last_used >= limit:
                    freed += self._drop(session)
                    del self._sessions[session.id]
                    count += 1
            self.expired_total += count
        return count, freed

    def drop_lane(self, lane: int) -> int:
        """Forget KV caches built by a model that is going away (their transcripts stay); returns bytes freed."""
        with self._lock:
            return sum(self._drop(s) for s in self._sessions.values() if s.lane == lane and s.kv is not None)

    def enforce(self) -> None:
        """Apply the caps now (after a config change)."""
        with self._lock:
            self._enforce_caps()

    def largest(self, n: int) -> dict[str, int]:
        """KV-cache bytes of the ``n`` sessions holding the most (one pass, no copy of every session)."""
        with self._lock:
            top = heapq.nlargest(n, self._sessions.values(), key=lambda s: s.kv_bytes)
            return {s.id: s.kv_bytes for s in top}

    def list(self) -> list[dict[str, Any]]:
        """Every session, least recently used first."""
        now = self._clock()
        with self._lock:
            return [s.to_dict(now) for s in self._sessions.values()]

    def counters(self) -> dict[str, int]:
        """Totals for stats."""
        return {
            "sessions": len(self._sessions),
            "session_kv_bytes": self.kv_bytes,
            "sessions_expired_total": self.expired_total,
            "sessions_evicted_total": self.evicted_total,
            "session_kv_dropped_total": self.kv_dropped_total,
            "session_freed_bytes_total": self.freed_bytes_total,
        }
