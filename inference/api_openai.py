"""OpenAI-compatible routes: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``.

Extra request field ``session_id`` (or header ``X-Session-Id``) continues a conversation with its KV cache.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, cast

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from inference import chat
from inference.batcher import Delta, Failed, Finished, GenerationRequest
from inference.engine import Engine
from inference.errors import InvalidRequest, NoModel, NotFound, WorkerError
from inference.protocol import WorkerConfig
from inference.sampling import SamplingParams
from inference.schemas import ChatCompletionRequest, CompletionRequest, SamplingFields
from inference.sessions import check_session_id

router = APIRouter(prefix="/v1")
MAX_STOPS = 4
MAX_PROMPTS = 64


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _check_model(engine: Engine, name: str) -> str:
    ids = engine.model_ids()
    if not ids:
        raise NoModel("no model is loaded")
    if name not in ids:
        raise NotFound(f"the model '{name}' does not exist; this worker serves '{ids[0]}'", "model", "model_not_found")
    return ids[0]


def _params(cfg: WorkerConfig, body: SamplingFields, max_tokens: int | None, name: str) -> tuple[SamplingParams, bool]:
    if max_tokens is not None and not 1 <= max_tokens <= cfg.max_tokens_limit:
        raise InvalidRequest(f"{name}={max_tokens} is out of range [1, {cfg.max_tokens_limit}]", name)
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > MAX_STOPS or any(not s for s in stops):
        raise InvalidRequest(f"stop must be a non-empty string or a list of at most {MAX_STOPS} of them", "stop")
    params = SamplingParams(
        max_tokens=max_tokens or cfg.default_max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stops,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        ignore_eos=body.ignore_eos,
    )
    return params, max_tokens is not None


def _session(body: SamplingFields, header: str | None) -> str | None:
    sid = body.session_id if body.session_id is not None else header
    return None if sid is None else check_session_id(sid, "session_id")


class Fanin:
    """Events of several sequences, tagged with their choice index, in one asyncio queue."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, Delta | Finished | Failed]] = asyncio.Queue()
        self.seqs: list[Any] = []
        self.done: set[int] = set()

    def submit_all(self, reqs: list[GenerationRequest]) -> Fanin:
        try:
            for i, req in enumerate(reqs):
                self.seqs.append(self.engine.submit(req, self._sink(i)))
        except WorkerError:
            self.cancel()
            raise
        return self

    def _sink(self, i: int) -> Callable[[Delta | Finished | Failed], None]:
        def sink(event: Delta | Finished | Failed) -> None:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (i, event))

        return sink

    async def events(self) -> AsyncIterator[tuple[int, Delta | Finished]]:
        while len(self.done) < len(self.seqs):
            i, event = await self.queue.get()
            if isinstance(event, Failed):
                self.done.add(i)
                raise event.error
            if isinstance(event, Finished):
                self.done.add(i)
            yield i, event

    def cancel(self) -> None:
        for i, seq in enumerate(self.seqs):
            if i not in self.done:
                self.engine.cancel(seq)


def _usage(finals: list[Finished]) -> dict[str, Any]:
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    usage: dict[str, Any] = {k: sum(f.usage[k] for f in finals) for k in keys}
    cached = sum(f.usage["prompt_tokens_details"]["cached_tokens"] for f in finals)
    usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


async def _collect(fan: Fanin) -> list[Finished]:
    finals: dict[int, Finished] = {}
    try:
        async for i, event in fan.events():
            if isinstance(event, Finished):
                finals[i] = event
    finally:
        fan.cancel()
    return [finals[i] for i in range(len(fan.seqs))]


def dumps(obj: Any) -> str:
    """Compact JSON for one SSE line."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class EventStream(StreamingResponse):
    """A StreamingResponse that always closes its generator, so a client hanging up cancels the request at once
    (Starlette stops iterating on disconnect but may leave the generator suspended until garbage collection)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await cast("AsyncGenerator[Any, None]", self.body_iterator).aclose()  # _sse's generator


def _sse(chunks: AsyncIterator[dict[str, Any]], fan: Fanin) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield f"data: {dumps(chunk)}\n\n"
        except WorkerError as exc:
            yield f"data: {dumps(exc.to_json())}\n\n"
        finally:
            fan.cancel()
        yield "data: [DONE]\n\n"

    return EventStream(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The active model (and any model still finishing requests after a swap)."""
    engine = _engine(request)
    data = []
    for lane in sorted(engine.lanes(), key=lambda x: x.draining):  # the active model first
        created = int(lane.runner.info.get("loaded_at", time.time()))
        entry = {"id": lane.model_id, "object": "model", "created": created, "owned_by": "lcp-worker"}
        data.append({**entry, "max_model_len": lane.runner.max_seq_len, "draining": lane.draining})
    return {"object": "list", "data": data}


def _completion_requests(engine: Engine, body: CompletionRequest, sid: str | None) -> list[GenerationRequest]:
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not prompts or len(prompts) > MAX_PROMPTS:
        raise InvalidRequest(f"prompt must be a string or a list of 1 to {MAX_PROMPTS} strings", "prompt")
    if any(not p for p in prompts):
        raise InvalidRequest("prompt must not be empty", "prompt")
    if sid is not None and len(prompts) > 1:
        raise InvalidRequest("a session continues one conversation: send a single prompt", "prompt")
    params, given = _params(engine.config, body, body.max_tokens, "max_tokens")
    return [GenerationRequest(p, params, given, sid) for p in prompts]


@router.post("/completions")
async def completions(
    body: CompletionRequest, request: Request, x_session_id: str | None = Header(default=None)
) -> Any:
    """Text completion (OpenAI ``text_completion``), streamed as SSE when ``stream`` is true."""
    engine = _engine(request)
    model = _check_model(engine, body.model)
    sid = _session(body, x_session_id)
    reqs = _completion_requests(engine, body, sid)
    fan = Fanin(engine).submit_all(reqs)
    rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    echo = [r.prompt if body.echo else "" for r in reqs]
    head = {"id": rid, "object": "text_completion", "created": created, "model": model}
    if sid is not None:
        head["session_id"] = sid
    if body.stream:
        usage_wanted = bool(body.stream_options and body.stream_options.include_usage)
        return _sse(_completion_chunks(fan, head, echo, usage_wanted), fan)
    finals = await _collect(fan)
    choices = [
        {"index": i, "text": echo[i] + f.text, "finish_reason": f.reason, "logprobs": None}
        for i, f in enumerate(finals)
    ]
    return {**head, "choices": choices, "usage": _usage(finals)}


async def _completion_chunks(
    fan: Fanin, head: dict[str, Any], echo: list[str], usage_wanted: bool
) -> AsyncIterator[dict[str, Any]]:
    finals: list[Finished] = []
    for i, text in enumerate(echo):
        if text:
            yield {**head, "choices": [{"index": i, "text": text, "finish_reason": None, "logprobs": None}]}
    async for i, event in fan.events():
        if isinstance(event, Delta):
            yield {**head, "choices": [{"index": i, "text": event.text, "finish_reason": None, "logprobs": None}]}
        else:
            finals.append(event)
            yield {**head, "choices": [{"index": i, "text": "", "finish_reason": event.reason, "logprobs": None}]}
    if usage_wanted:
        yield {**head, "choices": [], "usage": _usage(finals)}


def _chat_request(engine: Engine, body: ChatCompletionRequest, sid: str | None) -> GenerationRequest:
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    if not any(m["content"] for m in messages):
        raise InvalidRequest("messages must contain some text", "messages")
    name = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    params, given = _params(engine.config, body, max_tokens, name)
    lane = engine.active_lane()
    own = lane.runner.chat_prompt(messages) if lane is not None else None
    rendered = own if own is not None else chat.render(messages)
    if own is None:
        params.stop = params.stop + [s for s in chat.ROLE_STOPS if s not in params.stop]
    prompt = chat.new_part(rendered, engine.sessions.transcript(sid)) if sid is not None else rendered
    suffix = chat.TURN_END if own is None else ""
    return GenerationRequest(prompt, params, given, sid, transcript_suffix=suffix, prompt_param="messages")


@router.post("/chat/completions")
async def chat_completions(
    body: ChatCompletionRequest, request: Request, x_session_id: str | None = Header(default=None)
) -> Any:
    """Chat completion; the byte model uses the role-tagged template of ``inference.chat``."""
    engine = _engine(request)
    model = _check_model(engine, body.model)
    sid = _session(body, x_session_id)
    fan = Fanin(engine).submit_all([_chat_request(engine, body, sid)])
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
    }
    if sid is not None:
        head["session_id"] = sid
    if body.stream:
        usage_wanted = bool(body.stream_options and body.stream_options.include_usage)
        return _sse(_chat_chunks(fan, {**head, "object": "chat.completion.chunk"}, usage_wanted), fan)
    (final,) = await _collect(fan)
    message = {"role": "assistant", "content": final.text}
    choice = {"index": 0, "message": message, "finish_reason": final.reason, "logprobs": None}
    return {**head, "choices": [choice], "usage": _usage([final])}


async def _chat_chunks(fan: Fanin, head: dict[str, Any], usage_wanted: bool) -> AsyncIterator[dict[str, Any]]:
    yield {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    finals: list[Finished] = []
    async for _i, event in fan.events():
        if isinstance(event, Delta):
            yield {**head, "choices": [{"index": 0, "delta": {"content": event.text}, "finish_reason": None}]}
        else:
            finals.append(event)
            yield {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": event.reason}]}
    if usage_wanted:
        yield {**head, "choices": [], "usage": _usage(finals)}
