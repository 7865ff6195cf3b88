"""A lane is one loaded model with its waiting queue and running batch; ``Lane.step`` is one engine iteration.

Every sequence that enters a lane leaves it through exactly one of ``Finished`` (stop, length, cancelled) or
``Failed``, so the number of outputs always equals the number of inputs.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from inference.batcher import Delta, Failed, Finished, GenerationRequest, Scheduler, Sequence
from inference.errors import InvalidRequest
from inference.models.runner import Runner
from inference.protocol import WorkerConfig
from inference.sampling import SamplingParams, sample_batch
from inference.sessions import Session, SessionStore
from inference.stats import EngineCounters

log = logging.getLogger(__name__)


class Observer:
    """Receives engine events (the Prometheus metrics subclass this); the defaults do nothing."""

    def batch(self, size: int) -> None:
        """A forward pass produced ``size`` tokens."""

    def request_done(self, seq: Sequence, ok: bool, now: float) -> None:
        """A sequence finished (ok) or failed."""

    def rejected(self) -> None:
        """A request was refused because the queue was full."""


@dataclass
class Hooks:
    """Test hooks. ``before_step`` runs when a lane has work, before admission (block it to simulate a stuck step);
    ``before_forward`` runs inside the step's error handling (raise from it to simulate a failing kernel)."""

    before_step: Callable[[], None] | None = None
    before_forward: Callable[[], None] | None = None


@dataclass
class Shared:
    """What every lane shares with the engine."""

    sessions: SessionStore
    counters: EngineCounters
    clock: Callable[[], float]
    observer: Observer = field(default_factory=Observer)
    hooks: Hooks = field(default_factory=Hooks)


def _emit(seq: Sequence, event: Delta | Finished | Failed) -> None:
    try:
        seq.sink(event)
    except Exception:  # a closed event loop or a broken client must not stop the engine
        log.debug("dropping event for sequence %s", seq.id, exc_info=True)


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class Lane:
    """One model's queue, batch and step logic."""

    def __init__(self, runner: Runner, key: int, shared: Shared, lock: threading.RLock) -> None:
        self.runner = runner
        self.key = key
        self.shared = shared
        self.lock = lock
        self.waiting: deque[Sequence] = deque()
        self.scheduler = Scheduler(shared.clock)
        self.draining = False
        self.static = False
        self.force = False
        self.retired = threading.Event()
        self.result: dict[str, Any] = {}
        self.last_active = shared.clock()

    @property
    def model_id(self) -> str:
        return str(self.runner.info.get("id", f"lane-{self.key}"))

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.runner.seqs)

    # -- building a sequence (called from the submitting thread, under the engine lock) ------------------------

    def build(self, req: GenerationRequest, sink: Any, cfg: WorkerConfig) -> Sequence:
        """Tokenize, fit the context, attach the session; raises InvalidRequest for prompts that cannot fit."""
        limit, params = self.context_limit(cfg), req.params
        if params.max_tokens >= limit:
            raise InvalidRequest(
                f"max_tokens={params.max_tokens} leaves no room for a prompt: the context is {limit} tokens",
                "max_tokens",
                code="context_length_exceeded",
            )
        session = self.shared.sessions.checkout(req.session_id) if req.session_id else None
        try:
            context = (session.transcript if session else "") + req.prompt
            ids = self.runner.tokenizer.encode(context)
            if len(ids) + params.max_tokens > limit:
                ids, context, params = self._fit(ids, context, req, session, limit)
            seq = Sequence(ids, params, sink, self.key, self.shared.clock())
        except Exception:
            if session is not None:
                self.shared.sessions.release(session)
            raise
        seq.detok = self.runner.tokenizer.stream_decoder()
        if session is not None:
            seq.session, seq.context_text, seq.transcript_suffix = session, context, req.transcript_suffix
            if session.lane == self.key and session.kv is not None:
                seq.reuse_len = min(common_prefix(session.kv_tokens, ids), len(ids) - 1)
        return seq

    def context_limit(self, cfg: WorkerConfig) -> int:
        """The context a request may fill: the model's, or less when the config's ``max_seq_len`` says so."""
        model = self.runner.max_seq_len
        return model if cfg.max_seq_len is None else min(model, cfg.max_seq_len)

    def _fit(
        self, ids: list[int], context: str, req: GenerationRequest, session: Session | None, limit: int
    ) -> tuple[list[int], str, SamplingParams]:
        """Make a too-long context fit: sessions drop their oldest tokens; single requests get a 400 (or, without
        an explicit max_tokens, a smaller one)."""
        params, tok = req.params, self.runner.tokenizer
        if session is not None:
            keep = limit - params.max_tokens
            head = ids[:1] if tok.bos_id is not None and ids[:1] == [tok.bos_id] else []
            ids = head + ids[len(ids) - (keep - len(head)) :]
            session.truncations += 1
            return ids, tok.decode(ids), params
        if len(ids) >= limit:
            raise InvalidRequest(
                f"the prompt has {len(ids)} tokens but the model's context is {limit} tokens",
                req.prompt_param,
                code="context_length_exceeded",
            )
        if not req.max_tokens_given:
            return ids, context, replace(params, max_tokens=limit - len(ids))
        raise InvalidRequest(
            f"the prompt has {len(ids)} tokens and max_tokens is {params.max_tokens}: together they exceed the "
            f"model's context of {limit} tokens",
            "max_tokens",
            code="context_length_exceeded",
        )

    # -- one engine iteration (engine thread) ----------------------------------------------------------------

    def step(self, cfg: WorkerConfig) -> tuple[bool, float | None]:
        """Drop cancelled requests, admit waiting ones, prefill them, decode one token for the batch."""
        self.static = cfg.scheduling == "static"
        if self.shared.hooks.before_step is not None and self.busy:
            self.shared.hooks.before_step()
        with self.lock:
            cancelled = [s for s in self.waiting if s.cancelled]
            for seq in cancelled:
                self.waiting.remove(seq)
            admitted, hold = self.scheduler.admit(self.waiting, len(self.runner.seqs), cfg)
        for seq in cancelled:
            self._complete(seq, None)
        self._retire()
        if not admitted and not self.runner.seqs:
            return bool(cancelled), hold
        self.last_active = self.shared.clock()
        try:
            if self.shared.hooks.before_forward is not None:
                self.shared.hooks.before_forward()
            self._forward(admitted)
        except Exception as exc:
            log.exception("engine step failed on %s", self.model_id)
            self.fail(exc, admitted)
        return True, hold

    def _forward(self, admitted: list[Sequence]) -> None:
        """Prefill the admitted sequences and decode the running ones: in one mixed forward pass when the runner
        can, else a prefill pass (whose first tokens are then decoded along with the rest) and a decode pass."""
        self._take_session_caches(admitted)
        if admitted and self.runner.can_fuse(admitted):
            old = list(self.runner.seqs)
            self._sample_and_accept(old + admitted, self.runner.fused(admitted), first_from=len(old))
            return
        if admitted:
            self._sample_and_accept(admitted, self.runner.add(admitted), first_from=0)
        if self.runner.seqs:
            seqs = list(self.runner.seqs)
            self._sample_and_accept(seqs, self.runner.decode(), first_from=len(seqs))

    def _take_session_caches(self, admitted: list[Sequence]) -> None:
        for seq in admitted:
            if seq.session is not None:
                kv = self.shared.sessions.take_kv(seq.session)
                seq.kv_import = kv if seq.reuse_len and kv is not None else None
                seq.reuse_len = seq.reuse_len if seq.kv_import is not None else 0

    def _sample_and_accept(self, seqs: list[Sequence], logits: Any, first_from: int) -> None:
        tokens = sample_batch(logits, [(s.params, s.generator, s.output_ids) for s in seqs])
        now = self.shared.clock()
        self.shared.counters.batch(len(seqs), now)
        self.shared.observer.batch(len(seqs))
        for i, (seq, token) in enumerate(zip(seqs, tokens, strict=True)):
            if i >= first_from:
                seq.first_token_at = now
            self._accept(seq, token)
        self._retire()

    def _accept(self, seq: Sequence, token: int) -> None:
        seq.output_ids.append(token)
        if seq.reported:
            return  # a finished row kept in a static batch: computed, never shown
        if token == self.runner.tokenizer.eos_id and not seq.params.ignore_eos:
            self._finish(seq, "stop", flush=False)
            return
        assert seq.detok is not None  # set by build
        text, stopped = seq.stop.push(seq.detok.feed(token))
        if text:
            seq.text_parts.append(text)
            _emit(seq, Delta(text))
        if stopped:
            self._finish(seq, "stop", flush=False)
        elif len(seq.output_ids) >= seq.params.max_tokens or seq.kv_len + 1 >= self.runner.max_seq_len:
            self._finish(seq, "length", flush=True)

    def _finish(self, seq: Sequence, reason: str, flush: bool) -> None:
        if flush:
            assert seq.detok is not None  # set by build
            text, stopped = seq.stop.push(seq.detok.flush())
            text += "" if stopped else seq.stop.flush()
            reason = "stop" if stopped else reason
            if text:
                seq.text_parts.append(text)
                _emit(seq, Delta(text))
        seq.finish_reason = reason

    def _retire(self) -> None:
        """Hand finished sequences their result. Continuous: their rows leave the batch now. Static: the rows stay
        (and keep being computed, as in request-level batching) until every row of the batch has finished."""
        for seq in [s for s in self.runner.seqs if s.finished or s.cancelled]:
            keep = seq.session is not None and not seq.cancelled and not seq.reported
            if self.static:
                if not seq.reported:
                    seq.reported = True
                    self._complete(seq, self.runner.export(seq) if keep else None)
                continue
            snapshot = self.runner.remove(seq, export=keep)
            if not seq.reported:
                self._complete(seq, snapshot)
        if self.static and self.runner.seqs and all(s.reported for s in self.runner.seqs):
            for seq in list(self.runner.seqs):
                self.runner.remove(seq)

    def _complete(self, seq: Sequence, snapshot: Any) -> None:
        if seq.cancelled and not seq.finished:
            seq.finish_reason = "cancelled"
        if seq.session is not None:
            self._save_session(seq, snapshot)
        counters = self.shared.counters
        counters.add(requests_total=1, prompt_tokens_total=len(seq.prompt_ids))
        if seq.finish_reason == "cancelled":
            counters.add(cancelled_total=1)
        self.shared.observer.request_done(seq, True, self.shared.clock())
        _emit(seq, Finished(seq.finish_reason or "stop", seq.text, seq.usage()))

    def _save_session(self, seq: Sequence, snapshot: Any) -> None:
        session, store = seq.session, self.shared.sessions
        assert session is not None  # only sequences of a session save one
        if seq.finish_reason == "cancelled":
            store.release(session)
            return
        update = {
            "transcript": seq.context_text + seq.text + seq.transcript_suffix,
            "kv": snapshot,
            "kv_tokens": (seq.prompt_ids + seq.output_ids)[: seq.kv_len] if snapshot is not None else [],
            "kv_bytes": self.runner.snapshot_bytes(snapshot),
            "lane": self.key,
            "turns": session.turns + 1,
        }
        store.checkin(session, update)

    def fail(self, exc: BaseException, extra: Iterable[Sequence] = ()) -> int:
        """Fail every running sequence (and ``extra`` not yet in the batch); returns how many."""
        seqs = list(self.runner.seqs) + [s for s in extra if all(s is not r for r in self.runner.seqs)]
        seqs = [s for s in seqs if not s.reported]
        self.runner.reset()
        for seq in seqs:
            if seq.session is not None:
                self.shared.sessions.release(seq.session)
            self.shared.counters.add(requests_total=1, errors_total=1)
            self.shared.observer.request_done(seq, False, self.shared.clock())
            _emit(seq, Failed(exc))
        return len(seqs)

    def fail_waiting(self, exc: BaseException) -> int:
        """Fail every queued sequence; returns how many."""
        with self.lock:
            waiting, self.waiting = list(self.waiting), deque()
        for seq in waiting:
            if seq.session is not None:
                self.shared.sessions.release(seq.session)
            self.shared.counters.add(requests_total=1, errors_total=1)
            _emit(seq, Failed(exc))
        return len(waiting)
