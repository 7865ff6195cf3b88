"""Requests in flight (``Sequence``), the events they produce, and the admission policy of the running batch.

Scheduling is iteration-level (Orca, vLLM): between two decode steps, finished sequences leave the batch and waiting
ones join it, up to ``max_batch_size`` and within a prefill token budget per step. ``static`` mode is request-level
batching, the baseline the benchmark compares against: a batch is admitted only when the previous one is done, and
its rows stay in the batch until its longest request finishes (finished requests get their result at once).
``max_wait_ms`` lets an idle engine hold a new batch open briefly for more arrivals; with an empty queue there is
nothing to wait for.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference.protocol import WorkerConfig
from inference.sampling import SamplingParams, StopChecker
from inference.sessions import Session
from inference.tokenizer import StreamDecoder

_ids = itertools.count(1)


@dataclass
class Delta:
    """New output text (may be empty when only held-back bytes arrived)."""

    text: str


@dataclass
class Finished:
    """The sequence ended: ``reason`` is stop, length or cancelled."""

    reason: str
    text: str
    usage: dict[str, Any]


@dataclass
class Failed:
    """The sequence could not be completed."""

    error: BaseException


Sink = Callable[[Delta | Finished | Failed], None]


@dataclass
class GenerationRequest:
    """What a client asked for, before tokenization."""

    prompt: str
    params: SamplingParams = field(default_factory=SamplingParams)
    max_tokens_given: bool = True
    session_id: str | None = None
    transcript_suffix: str = ""
    prompt_param: str = "prompt"


class Sequence:
    """One request being served: its tokens, KV bookkeeping, output text and timing."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, sink: Sink, lane: int, now: float) -> None:
        self.id = next(_ids)
        self.prompt_ids = prompt_ids
        self.params = params
        self.sink = sink
        self.lane = lane
        self.arrival = now
        self.first_token_at: float | None = None
        self.reuse_len = 0
        self.kv_import: Any = None
        self.kv_len = 0
        self.output_ids: list[int] = []
        self.text_parts: list[str] = []
        self.generator = params.generator()
        self.stop = StopChecker(params.stop)
        self.detok: StreamDecoder | None = None
        self.session: Session | None = None
        self.context_text = ""
        self.transcript_suffix = ""
        self.finish_reason: str | None = None
        self.cancelled = False
        self.reported = False

    @property
    def prefill_len(self) -> int:
        """Prompt tokens this sequence still has to prefill."""
        return len(self.prompt_ids) - self.reuse_len

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def usage(self) -> dict[str, Any]:
        """OpenAI usage, with the KV-cache hits of a session as ``prompt_tokens_details.cached_tokens``."""
        prompt, completion = len(self.prompt_ids), len(self.output_ids)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": self.reuse_len},
        }


class Scheduler:
    """Chooses which waiting sequences join the running batch at the next step."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock

    def admit(self, waiting: deque[Sequence], running: int, cfg: WorkerConfig) -> tuple[list[Sequence], float | None]:
        """(sequences to prefill now, seconds until it is worth asking again when a batch is being held open)."""
        free = cfg.max_batch_size - running
        if not waiting or free <= 0 or (cfg.scheduling == "static" and running):
            return [], None
        if running == 0 and cfg.max_wait_ms > 0 and len(waiting) < free:
            hold = cfg.max_wait_ms / 1000 - (self.clock() - waiting[0].arrival)
            if hold > 0:
                return [], hold
        admitted: list[Sequence] = []
        budget = cfg.prefill_token_budget
        while waiting and len(admitted) < free:
            cost = waiting[0].prefill_len
            if admitted and cost > budget:
                break
            admitted.append(waiting.popleft())
            budget -= cost
        return admitted, None
