"""Getting results out of the engine thread: a blocking helper and an asyncio stream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from inference.batcher import Delta, Failed, Finished, GenerationRequest, Sequence
from inference.engine import Engine
from inference.sampling import SamplingParams


@dataclass
class Result:
    """A finished generation."""

    text: str
    finish_reason: str
    usage: dict[str, Any]
    output_ids: list[int]
    ttft_s: float | None
    latency_s: float


def make_request(engine: Engine, prompt: str, session_id: str | None = None, **params: Any) -> GenerationRequest:
    """A GenerationRequest with the engine's default max_tokens when none is given."""
    given = "max_tokens" in params
    params.setdefault("max_tokens", engine.config.default_max_tokens)
    return GenerationRequest(prompt, SamplingParams(**params), max_tokens_given=given, session_id=session_id)


def _result(seq: Sequence, fin: Finished, now: float) -> Result:
    ttft = None if seq.first_token_at is None else seq.first_token_at - seq.arrival
    return Result(fin.text, fin.reason, fin.usage, list(seq.output_ids), ttft, now - seq.arrival)


def wait_for(engine: Engine, req: GenerationRequest, timeout: float = 300.0) -> Result:
    """Submit and block until the request finishes (raises its error, or TimeoutError)."""
    done = threading.Event()
    events: list[Any] = []

    def sink(event: Any) -> None:
        events.append(event)
        if isinstance(event, Finished | Failed):
            done.set()

    seq = engine.submit(req, sink)
    if not done.wait(timeout):
        engine.cancel(seq)
        raise TimeoutError(f"generation did not finish within {timeout}s")
    last = events[-1]
    if isinstance(last, Failed):
        raise last.error
    return _result(seq, last, engine.clock())


def generate(
    engine: Engine, prompt: str, session_id: str | None = None, timeout: float = 300.0, **params: Any
) -> Result:
    """Blocking generation through the engine (tests, benchmarks, golden sets)."""
    return wait_for(engine, make_request(engine, prompt, session_id, **params), timeout)


class AsyncStream:
    """Receives a sequence's events from the engine thread into an asyncio queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.queue: asyncio.Queue[Delta | Finished | Failed] = asyncio.Queue()
        self.seq: Sequence | None = None

    def sink(self, event: Delta | Finished | Failed) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def events(self) -> AsyncIterator[Delta | Finished]:
        """Deltas, then the Finished event; a Failed event raises its error."""
        while True:
            event = await self.queue.get()
            if isinstance(event, Failed):
                raise event.error
            yield event
            if isinstance(event, Finished):
                return


def submit_async(engine: Engine, req: GenerationRequest) -> AsyncStream:
    """Submit from the event loop; iterate ``stream.events()`` for the output."""
    stream = AsyncStream()
    stream.seq = engine.submit(req, stream.sink)
    return stream


async def agenerate(engine: Engine, req: GenerationRequest) -> Result:
    """Submit and await the whole result."""
    stream = submit_async(engine, req)
    seq = stream.seq
    assert seq is not None  # set by submit_async
    try:
        async for event in stream.events():
            if isinstance(event, Finished):
                return _result(seq, event, engine.clock())
    except asyncio.CancelledError:
        engine.cancel(seq)
        raise
    raise RuntimeError("stream ended without a result")
