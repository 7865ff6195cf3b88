"""The /v1 endpoints: authenticate, route, serve from the cache or proxy to the worker, record once.

A small Starlette app mounted in front of Django (see ``controlplane/asgi.py``): a gateway must add as little as
possible to each request, and Django's request cycle costs milliseconds and thread hops that a proxy does not need.
It uses Django's models, settings and cache like the rest of the control plane; the database is only read on
token and route cache misses."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from controlplane.monitoring import gateway_metrics as metrics
from controlplane.workers.client import WorkerClient, WorkerUnavailable

from . import cache
from .auth import Caller, authenticate
from .errors import GatewayError, error_response
from .limits import check_rate_limit
from .recorder import record
from .routing import NoWorker, Target, list_models, resolve, resolve_waiting
from .validation import parse_body

logger = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_clients: dict[tuple[int, str], WorkerClient] = {}


def worker(target: Target) -> WorkerClient:
    key = (target.deployment_id, target.worker_url)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = WorkerClient.for_deployment(target.deployment_id, target.worker_url)
    return client


@dataclass
class Exchange:
    """One request's bookkeeping, recorded once when it ends."""

    caller: Caller
    target: Target
    endpoint: str
    session_id: str
    stream: bool
    started: float = field(default_factory=time.perf_counter)
    at: datetime = field(default_factory=timezone.now)
    cached: bool = False
    ttft_s: float | None = None
    usage: dict = field(default_factory=dict)
    finish_reason: str = ""

    async def finish(self, status: int, error: str = "") -> None:
        latency = time.perf_counter() - self.started
        labels = (self.target.deployment_name, self.target.variant)
        metrics.requests.labels(*labels, self.endpoint, str(status)).inc()
        metrics.e2e_latency.labels(*labels).observe(latency)
        if self.ttft_s is not None:
            metrics.ttft.labels(*labels).observe(self.ttft_s)
        prompt, completion = int(self.usage.get("prompt_tokens") or 0), int(self.usage.get("completion_tokens") or 0)
        metrics.prompt_tokens.labels(*labels).inc(prompt)
        metrics.generation_tokens.labels(*labels).inc(completion)
        await record(
            at=self.at,
            deployment_id=self.target.deployment_id,
            revision=self.target.revision,
            model_version_id=self.target.model_version_id,
            variant=self.target.variant,
            token_id=self.caller.token_id,
            user_id=self.caller.user_id,
            endpoint=self.endpoint,
            session_id=self.session_id,
            status_code=status,
            cached=self.cached,
            streamed=self.stream,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_s=latency,
            ttft_s=self.ttft_s,
            finish_reason=self.finish_reason[:32],
            error=error[:300],
        )


async def read_body(request: Request) -> bytes:
    """The body, refused with 413 past ``MAX_REQUEST_BYTES`` (checked on the header and while reading)."""
    limit = settings.MAX_REQUEST_BYTES
    too_large = GatewayError(413, f"Request body is larger than the limit of {limit} bytes.", code="request_too_large")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise GatewayError(400, "Content-Length is not a number.")
        if int(length) > limit:
            raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def session_of(request: Request, body: dict) -> str:
    session_id = body.get("session_id") or request.headers.get("x-session-id") or ""
    if session_id and (not isinstance(session_id, str) or not SESSION_ID.match(session_id)):
        raise GatewayError(400, "'session_id' must be 1-128 letters, digits or . _ : -", param="session_id")
    return session_id


def wants_cache(request: Request, body: dict, target: Target, session_id: str) -> bool:
    if target.cache_ttl_s <= 0 or session_id or not cache.is_deterministic(body):
        return False
    bypass = request.headers.get("cache-control", "").lower() in ("no-cache", "no-store")
    return not (bypass or request.headers.get("x-cache-bypass") == "1")


async def models(request: Request) -> Response:
    try:
        await authenticate(request)
    except GatewayError as exc:
        return exc.response()
    data = await list_models()
    model = request.path_params.get("model")
    if model is None:
        return JSONResponse({"object": "list", "data": data})
    found = next((row for row in data if row["id"] == model), None)
    if found is None:
        return error_response(404, f"The model {model!r} does not exist.", param="model", code="model_not_found")
    return JSONResponse(found)


async def completions(request: Request) -> Response:
    return await proxy(request, "completions", "/v1/completions")


async def chat_completions(request: Request) -> Response:
    return await proxy(request, "chat.completions", "/v1/chat/completions")


async def proxy(request: Request, endpoint: str, path: str) -> Response:
    caller: Caller | None = None
    target: Target | None = None
    body: dict = {}
    session_id = ""
    try:
        caller = await authenticate(request)
        raw = await read_body(request)
        body = parse_body(raw)
        session_id = session_of(request, body)
        try:
            target = await resolve(body["model"], session_id)
        except NoWorker as exc:  # a worker (re)starting: wait for it below, once the caller is within its limits
            target = exc.target
        await check_rate_limit(caller)
        if not target.worker_url:
            target = await resolve_waiting(body["model"], session_id)
    except GatewayError as exc:
        target = target or getattr(exc, "target", None)
        await refused(exc, endpoint, caller, target, session_id, stream=body.get("stream") is True)
        return exc.response()
    exchange = Exchange(caller, target, endpoint, session_id, stream=bool(body.get("stream")))
    key = cache.cache_key(target, endpoint, body) if wants_cache(request, body, target, session_id) else None
    if key is not None:
        hit = await cache.get(key)
        metrics.cache_lookups.labels(target.deployment_name, "hit" if hit else "miss").inc()
        await cache.count(target.deployment_id, "hits" if hit else "misses")
        if hit is not None:
            return await replay(exchange, hit)
    headers = {"X-Session-Id": session_id} if session_id else {}
    if exchange.stream:
        return await stream(exchange, path, body, headers, key)
    return await forward(exchange, path, raw, headers, key)


async def refused(
    exc: GatewayError, endpoint: str, caller: Caller | None, target: Target | None, session_id: str, *, stream: bool
) -> None:
    """Count a request refused before it reached a worker. Once the caller and the deployment are known (no worker,
    rate limit) it is recorded like any other request, so that error rates, rollout gates and usage see it; before
    that (no or a bad token, a malformed body, an unknown model) there is no deployment to record it against and,
    for unauthenticated callers, nobody to bill it to: only the metric counts it, with empty labels."""
    if caller is None or target is None:
        metrics.requests.labels("", "", endpoint, str(exc.status)).inc()
        return
    if exc.status >= 500:
        logger.warning("%s %s refused with %s: %s", endpoint, target.deployment_name, exc.status, exc.detail)
    exchange = Exchange(caller, target, endpoint, session_id, stream=stream)
    await exchange.finish(exc.status, exc.detail)


def served_headers(exchange: Exchange, cache_state: str) -> dict:
    target = exchange.target
    return {"X-Cache": cache_state, "X-Served-By": f"{target.deployment_name}/{target.variant}/{target.cache_scope}"}


async def send(exchange: Exchange, path: str, payload: bytes, headers: dict, *, stream: bool = False):
    """Send to the target's worker; if it cannot be reached (it died, or a promoted canary took its place), wait for
    the deployment's next worker (``resolve_waiting``) and try that one once."""
    try:
        return await worker(exchange.target).send(path, payload, headers, stream=stream)
    except WorkerUnavailable:
        gone = exchange.target.worker_url
        try:
            fresh = await resolve_waiting(exchange.target.deployment_name, exchange.session_id, not_url=gone)
        except GatewayError:
            fresh = None
        if fresh is None or fresh.worker_url == gone:
            raise
        exchange.target = fresh
        return await worker(fresh).send(path, payload, headers, stream=stream)


def unavailable() -> Response:
    return error_response(
        503,
        "The model's worker is not answering; retry shortly.",
        code="worker_unavailable",
        retry_after=settings.GATEWAY_RETRY_AFTER_S,
    )


async def forward(exchange: Exchange, path: str, payload: bytes, headers: dict, key: str | None) -> Response:
    try:
        response = await send(exchange, path, payload, headers)
    except WorkerUnavailable as exc:
        await exchange.finish(503, exc.message)
        return unavailable()
    content = response.content
    if response.status_code != 200:
        await exchange.finish(response.status_code, content[:300].decode(errors="replace"))
        return passthrough(response, content)
    exchange.usage, exchange.finish_reason = usage_of(content)
    if key is not None:
        await cache.put(key, content, exchange.target.cache_ttl_s)
        await cache.count(exchange.target.deployment_id, "bytes_stored", len(content))
    await exchange.finish(200)
    return Response(
        content, media_type="application/json", headers=served_headers(exchange, "miss" if key else "bypass")
    )


def usage_of(content: bytes) -> tuple[dict, str]:
    """The usage and first finish reason of a (non-streamed) completion."""
    try:
        answer = json.loads(content)
        return answer.get("usage") or {}, (answer.get("choices") or [{}])[0].get("finish_reason") or ""
    except (ValueError, AttributeError, IndexError, TypeError):
        return {}, ""


def passthrough(response, content: bytes) -> Response:
    """A worker's error, as the worker said it (OpenAI format), with its Retry-After."""
    headers = {"Retry-After": response.headers["retry-after"]} if "retry-after" in response.headers else {}
    return Response(
        content,
        status_code=response.status_code,
        media_type=response.headers.get("content-type", "application/json"),
        headers=headers,
    )


async def replay(exchange: Exchange, payload: bytes) -> Response:
    exchange.cached = True
    await cache.count(exchange.target.deployment_id, "bytes_served", len(payload))
    headers = served_headers(exchange, "hit")
    if exchange.stream:
        exchange.ttft_s = time.perf_counter() - exchange.started
        await exchange.finish(200)
        return Response(payload, media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"})
    exchange.usage, exchange.finish_reason = usage_of(payload)
    await exchange.finish(200)
    return Response(payload, media_type="application/json", headers=headers)


async def stream(exchange: Exchange, path: str, body: dict, headers: dict, key: str | None) -> Response:
    options = body.get("stream_options") or {}  # an object or absent (see validation.parse_body)
    client_wants_usage = options.get("include_usage") is True
    forwarded = {**body, "stream_options": {**options, "include_usage": True}}
    try:
        response = await send(exchange, path, json.dumps(forwarded).encode(), headers, stream=True)
    except WorkerUnavailable as exc:
        await exchange.finish(503, exc.message)
        return unavailable()
    if response.status_code != 200:
        content = await response.aread()
        await response.aclose()
        await exchange.finish(response.status_code, content[:300].decode(errors="replace"))
        return passthrough(response, content)
    relay = SseRelay(exchange, response, client_wants_usage, key)
    out_headers = {
        **served_headers(exchange, "miss" if key else "bypass"),
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    return StreamingResponse(relay.events(), media_type="text/event-stream", headers=out_headers)


class SseRelay:
    """Passes the worker's server-sent events through, noting the first token and the usage; hides the usage chunk
    from clients that did not ask for it; caches the whole stream when it completed."""

    def __init__(self, exchange: Exchange, response, client_wants_usage: bool, key: str | None):
        self.exchange = exchange
        self.response = response
        self.client_wants_usage = client_wants_usage
        self.key = key
        self.sent: list[bytes] = []
        self.done = False

    def _event(self, event: bytes) -> bytes | None:
        data = event[6:] if event.startswith(b"data: ") else None
        if data is None:
            return event
        if data.strip() == b"[DONE]":
            self.done = True
            return event
        try:
            chunk = json.loads(data)
        except ValueError:
            return event
        choices = chunk.get("choices") or []
        if chunk.get("usage"):
            self.exchange.usage = chunk["usage"]
            if not choices and not self.client_wants_usage:
                return None
        if choices and self.exchange.ttft_s is None:
            self.exchange.ttft_s = time.perf_counter() - self.exchange.started
        if choices and choices[0].get("finish_reason"):
            self.exchange.finish_reason = choices[0]["finish_reason"]
        return event

    async def events(self):
        buffer = b""
        status, error = 200, ""
        try:
            async for chunk in self.response.aiter_raw():
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    out = self._event(event.strip(b"\r\n"))
                    if out is not None:
                        self.sent.append(out + b"\n\n")
                        yield out + b"\n\n"
        except Exception as exc:  # the worker went away mid-stream
            status, error = 502, f"stream interrupted: {type(exc).__name__}: {exc}"
            message = {"error": {"message": "The worker stopped mid-stream.", "type": "api_error", "code": "stream"}}
            yield f"data: {json.dumps(message)}\n\n".encode()
        finally:
            if status == 200 and not self.done:
                status, error = 499, "the client went away before the end of the stream"
            await self.exchange.finish(status, error)
            await self.response.aclose()
        if self.done and self.key is not None:
            payload = b"".join(self.sent)
            await cache.put(self.key, payload, self.exchange.target.cache_ttl_s)
            await cache.count(self.exchange.target.deployment_id, "bytes_stored", len(payload))


async def method_not_allowed(request: Request, exc) -> Response:
    return error_response(405, f"{request.method} is not allowed here.", code="method_not_allowed")


async def server_error(request: Request, exc: Exception) -> Response:
    """The last resort, in OpenAI's format (the exception is logged by the server as well)."""
    return error_response(500, "The gateway failed to handle this request.", code="internal_error")


async def not_found(request: Request, exc) -> Response:
    return error_response(
        404,
        f"There is no {request.url.path}; see GET /v1/models, POST /v1/completions and POST /v1/chat/completions.",
        code="not_found",
    )


app = Starlette(
    routes=[
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model:str}", models, methods=["GET"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ],
    exception_handlers={405: method_not_allowed, 404: not_found, Exception: server_error},
)
