"""The worker's HTTP API: an ASGI app (FastAPI) around one Engine.

``/health`` and ``/metrics`` are open; ``/v1`` (OpenAI-compatible) needs the API key when one is set; ``/control``
always needs the control token. Every error is OpenAI's JSON: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from inference.api_control import router as control_router
from inference.api_openai import router as openai_router
from inference.engine import Engine
from inference.errors import InvalidRequest, Overloaded, PayloadTooLarge, Unauthorized, WorkerError
from inference.faults import Faults
from inference.metrics import WorkerMetrics
from inference.protocol import ConfigError

log = logging.getLogger(__name__)


@dataclass
class StartupLoad:
    """A model to load in the background when the app starts."""

    path: str
    precision: str = "fp32"
    device: str = "auto"
    model_id: str | None = None


def error_response(exc: WorkerError) -> JSONResponse:
    """OpenAI-style error JSON with the right status (and Retry-After for 429)."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


def _param(loc: tuple[Any, ...], body: Any) -> str | None:
    """The dotted path of ``loc`` that exists in the body (drops pydantic's union-member tags like ``str``)."""
    parts, node = [], body
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node:
            parts.append(part)  # a missing key: name it, then stop
            break
        if (isinstance(node, dict) and part in node) or (isinstance(node, list) and isinstance(part, int)):
            node = node[part] if not isinstance(node, list) or part < len(node) else None
            parts.append(str(part))
        else:
            break
    return ".".join(parts) or None


def _validation_error(exc: RequestValidationError) -> WorkerError:
    err = exc.errors()[0]
    kind = err.get("type")
    param = _param(tuple(err.get("loc", ())), getattr(exc, "body", None))
    if kind == "json_invalid":
        detail = err.get("ctx", {}).get("error", err.get("msg"))
        return _bad(f"the body is not valid JSON: {detail}", None, "invalid_json")
    if kind == "extra_forbidden":
        return _bad(f"unrecognized request argument supplied: {param}", param, "unknown_parameter")
    if kind == "missing":
        return _bad(f"missing required parameter: {param}", param, "missing_required_parameter")
    if param is None:
        return _bad(f"invalid request body: {err.get('msg')}", None, "invalid_body")
    return _bad(f"invalid value for {param}: {err.get('msg')} (got {err.get('input')!r})", param, "invalid_value")


def _bad(message: str, param: str | None, code: str) -> WorkerError:
    return InvalidRequest(message, param=param, code=code)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WorkerError)
    async def worker_error(_request: Request, exc: WorkerError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(ConfigError)
    async def config_error(_request: Request, exc: ConfigError) -> JSONResponse:
        return error_response(_bad(str(exc), exc.param, "invalid_value"))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = WorkerError(f"{exc.detail}: {request.method} {request.url.path}", code="not_found")
        err.status, err.type = exc.status_code, "invalid_request_error"
        return error_response(err)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(WorkerError(f"internal error: {type(exc).__name__}: {exc}"))


def check_bearer(headers: dict[str, str], expected: str | None, what: str) -> None:
    """Raise Unauthorized unless the Authorization header is ``Bearer <expected>`` (nothing to check when None)."""
    if expected is None:
        return
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized(f"missing or wrong {what} (send 'Authorization: Bearer <{what}>')")


class Gate:
    """ASGI middleware in front of every route: bearer auth first, then the body-size limit (413).

    ``/control`` always needs the control token; ``/v1`` needs the API key when one is set. Bodies are read here
    (at most ``limit()`` bytes) and replayed to the app, so an oversized body never reaches a route.
    """

    def __init__(self, app: Any, limit: Callable[[], int], control_token: str, api_key: str | None) -> None:
        self.app, self.limit, self.control_token, self.api_key = app, limit, control_token, api_key

    def _auth(self, scope: Scope) -> None:
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if path == "/control" or path.startswith("/control/"):
            check_bearer(headers, self.control_token, "control token")
        elif path == "/v1" or path.startswith("/v1/"):
            check_bearer(headers, self.api_key, "API key")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._auth(scope)
        except Unauthorized as exc:
            await error_response(exc)(scope, receive, send)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit, chunks, size, more = self.limit(), [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limit:
                await error_response(PayloadTooLarge(f"the body has more than {limit} bytes"))(scope, receive, send)
                return
        await self.app(scope, _replay(b"".join(chunks), receive), send)


class FaultGate:
    """ASGI middleware of a worker with fault injection enabled: fails the configured share of ``/v1`` requests
    with a 500 that says it was injected, before they reach the engine."""

    def __init__(self, app: Any, faults: Faults) -> None:
        self.app, self.faults = app, faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/v1/") and scope["method"] == "POST":
            message = self.faults.fail_request()
            if message is not None:
                await error_response(WorkerError(message, code="injected_fault"))(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _start_load(engine: Engine, load: StartupLoad) -> None:
    def run() -> None:
        try:
            engine.load(load.path, load.precision, load.device, load.model_id)
        except Exception as exc:
            log.error("could not load %s: %s", load.path, exc)

    threading.Thread(target=run, name="startup-load", daemon=True).start()


def create_app(
    engine: Engine,
    control_token: str,
    api_key: str | None = None,
    startup_load: StartupLoad | None = None,
    faults: Faults | None = None,
) -> FastAPI:
    """The worker app; the engine is started on start-up (if needed) and stopped on shutdown. ``faults``: fault
    injection enabled (``/control/faults``); None (the default) leaves it off."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        if startup_load is not None:
            _start_load(engine, startup_load)
        yield
        if faults is not None:
            faults.stop()
        engine.stop()

    app = FastAPI(title="lcp inference worker", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.control_token = control_token
    app.state.api_key = api_key
    metrics = WorkerMetrics(engine)
    engine.observer = metrics
    app.state.metrics = metrics
    app.state.faults = faults
    engine.faults = faults
    _install_error_handlers(app)
    if faults is not None:
        app.add_middleware(FaultGate, faults=faults)
        log.warning("fault injection is enabled (POST /control/faults): never use this worker in production")
    app.add_middleware(Gate, limit=lambda: engine.config.max_body_bytes, control_token=control_token, api_key=api_key)
    app.include_router(openai_router)
    app.include_router(control_router)

    @app.get("/health")
    async def health() -> JSONResponse:
        ok, body = engine.health()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
