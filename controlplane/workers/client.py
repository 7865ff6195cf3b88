"""The one way the control plane talks to an inference worker: its HTTP API (control + OpenAI-compatible).

Control calls are synchronous (the supervisor, jobs and API views run in threads), through httpx; inference calls
are async (the /v1 gateway runs in the event loop) and share one aiohttp connection pool per event loop. aiohttp
there, not httpx: under concurrency httpcore's pool re-scans every connection (a ``select`` on each idle one, and
a quadratic idle count) twice per request, which took a quarter of the gateway's event loop at 16 concurrent
requests; aiohttp's connector hands out a keep-alive connection in constant time. Every call has a bounded
timeout; a worker that does not answer raises ``WorkerUnavailable``, one that refuses raises ``WorkerError`` with
its status and message.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import aiohttp
import httpx
from django.conf import settings

__all__ = [
    "UpstreamResponse",
    "WorkerClient",
    "WorkerError",
    "WorkerUnavailable",
    "close_async_clients",
    "worker_secret",
]

CONTROL_TIMEOUT = httpx.Timeout(10.0, connect=2.0)
# Loading or swapping a model reads and verifies the weights first.
LOAD_TIMEOUT = httpx.Timeout(600.0, connect=2.0)
# Generation: the worker answers 429 at once when overloaded, so a long read means a long completion.
INFERENCE_TIMEOUT = httpx.Timeout(connect=2.0, read=300.0, write=10.0, pool=5.0)
# Idle connections are dropped before the worker's server (uvicorn: 5 s) closes them, so that a request is never
# sent on a connection the server is closing at that moment (that race surfaces as a ReadError).
KEEPALIVE_S = 2.0


class WorkerError(Exception):
    """The worker answered with an error."""

    def __init__(self, status: int, message: str, body: Any = None, retry_after: str | None = None):
        super().__init__(f"worker answered {status}: {message}")
        self.status = status
        self.message = message
        self.body = body
        self.retry_after = retry_after


class WorkerUnavailable(WorkerError):
    """The worker could not be reached in time (not started, crashed, or hung)."""

    def __init__(self, message: str):
        super().__init__(503, message)


def worker_secret(deployment_id: int, purpose: str) -> str:
    """A per-deployment secret derived from SECRET_KEY, so every control-plane process knows it without storing it."""
    message = f"lcp-worker:{purpose}:{deployment_id}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def _error_message(body: Any, fallback: str) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if body.get("detail"):
            return str(body["detail"])
    return fallback


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = response.text[:500]
    raise WorkerError(
        response.status_code, _error_message(body, response.reason_phrase), body, response.headers.get("Retry-After")
    )


_async_clients: dict[int, aiohttp.ClientSession] = {}
_AIOHTTP_TIMEOUT = aiohttp.ClientTimeout(
    total=None, connect=INFERENCE_TIMEOUT.pool, sock_connect=INFERENCE_TIMEOUT.connect, sock_read=INFERENCE_TIMEOUT.read
)


def _async_client() -> aiohttp.ClientSession:
    """One pooled session per event loop (uvicorn has one; tests may start several)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(id(loop))
    if client is None or client.closed:
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=0, keepalive_timeout=KEEPALIVE_S)
        client = aiohttp.ClientSession(
            connector=connector, timeout=_AIOHTTP_TIMEOUT, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )
        _async_clients[id(loop)] = client
    return client


async def close_async_clients() -> None:
    """Close this event loop's pooled session (when the server, or a test's loop, ends)."""
    client = _async_clients.pop(id(asyncio.get_running_loop()), None)
    if client is not None:
        await client.close()


class UpstreamResponse:
    """A worker's answer to an inference call: ``status_code``, ``headers`` (case-insensitive), ``content`` (read
    unless streaming), ``aread()``, ``aiter_raw()`` and ``aclose()`` (returns the connection to the pool)."""

    def __init__(self, response: aiohttp.ClientResponse, content: bytes | None = None):
        self._response = response
        self.status_code = response.status
        self.headers = response.headers
        self.content = content

    async def aread(self) -> bytes:
        if self.content is None:
            self.content = await self._response.read()
        return self.content

    async def aiter_raw(self):
        async for chunk in self._response.content.iter_any():
            yield chunk

    async def aclose(self) -> None:
        self._response.release()


class WorkerClient:
    """A worker at ``base_url``. ``control_token`` unlocks /control/…; ``api_key`` unlocks /v1/… when the worker
    was started with one."""

    def __init__(self, base_url: str, *, control_token: str | None = None, api_key: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.control_token = control_token
        self.api_key = api_key
        self._sync: httpx.Client | None = None

    @property
    def _http(self) -> httpx.Client:
        """The synchronous client for control calls, made on first use (the gateway never needs one)."""
        if self._sync is None:
            self._sync = httpx.Client(
                base_url=self.base_url, timeout=CONTROL_TIMEOUT, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S)
            )
        return self._sync

    @classmethod
    def for_deployment(cls, deployment_id: int, base_url: str) -> WorkerClient:
        return cls(
            base_url, control_token=worker_secret(deployment_id, "control"), api_key=worker_secret(deployment_id, "api")
        )

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()

    # --- control (sync) ------------------------------------------------------------------------------------------
    def _control(self, method: str, path: str, *, json: Any = None, timeout=None) -> Any:
        headers = {"Authorization": f"Bearer {self.control_token}"} if self.control_token else {}
        try:
            response = self._http.request(method, path, json=json, headers=headers, timeout=timeout or CONTROL_TIMEOUT)
        except httpx.TimeoutException as exc:
            raise WorkerUnavailable(f"{self.base_url} did not answer {method} {path} in time ({exc})") from None
        except httpx.TransportError as exc:
            raise WorkerUnavailable(f"{self.base_url} cannot be reached: {exc}") from None
        _raise_for(response)
        return response.json() if response.content else None

    def health(self) -> dict:
        """``/health``: 200 only while the engine makes progress; raises ``WorkerError`` (503) otherwise."""
        return self._control("GET", "/health", timeout=httpx.Timeout(3.0, connect=1.0))

    def ready(self) -> dict:
        """Healthy and serving a model (a worker answers /health while it is still loading one); raises
        ``WorkerError`` (503) otherwise."""
        body = self.health()
        if not body.get("model") or body.get("loading"):
            raise WorkerError(503, "the worker is up but its model is not loaded yet", body)
        return body

    def stats(self, timeout: float | None = None) -> dict:
        return self._control("GET", "/control/stats", timeout=timeout)

    def status(self) -> dict:
        return self._control("GET", "/control/status")

    def get_config(self) -> dict:
        return self._control("GET", "/control/config")

    def patch_config(self, changes: dict) -> dict:
        return self._control("PATCH", "/control/config", json=changes)

    def load(self, path: str, precision: str, *, sha256: str | None = None, model_id: str | None = None) -> dict:
        body = {"path": path, "precision": precision, "sha256": sha256, "model_id": model_id}
        return self._control("POST", "/control/load", json=body, timeout=LOAD_TIMEOUT)

    def swap(self, path: str, precision: str, *, sha256: str | None = None, model_id: str | None = None) -> dict:
        """Load beside the current model, switch new requests over, let requests in flight finish, free the old."""
        body = {"path": path, "precision": precision, "sha256": sha256, "model_id": model_id}
        return self._control("POST", "/control/swap", json=body, timeout=LOAD_TIMEOUT)

    def unload(self) -> dict:
        return self._control("POST", "/control/unload")

    def sessions(self) -> list[dict]:
        body = self._control("GET", "/control/sessions")
        return body.get("sessions", body) if isinstance(body, dict) else body

    def delete_session(self, session_id: str) -> dict:
        return self._control("DELETE", f"/control/sessions/{session_id}")

    def expire_sessions(self, idle_s: float | None = None) -> dict:
        """``{"expired": n, "freed_bytes": m}``."""
        return self._control("POST", "/control/sessions/expire", json={} if idle_s is None else {"idle_s": idle_s})

    def perplexity(self, texts: list[str]) -> dict:
        return self._control("POST", "/control/perplexity", json={"texts": texts}, timeout=LOAD_TIMEOUT)

    def complete(
        self, model: str, prompt: str, *, max_tokens: int = 32, temperature: float = 0.0, seed: int | None = 0
    ) -> dict:
        """One completion of ``model`` (the id the worker serves: the deployment's name), synchronously (jobs and
        gates score golden sets this way)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
        }
        try:
            response = self._http.post("/v1/completions", json=body, headers=headers, timeout=INFERENCE_TIMEOUT)
        except httpx.TimeoutException as exc:
            raise WorkerUnavailable(f"{self.base_url} did not answer in time ({exc})") from None
        except httpx.TransportError as exc:
            raise WorkerUnavailable(f"{self.base_url} cannot be reached: {exc}") from None
        _raise_for(response)
        return response.json()

    # --- inference (async) ---------------------------------------------------------------------------------------
    def _inference_headers(self, extra: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(extra or {})
        return headers

    async def send(self, path: str, body: bytes, headers: dict | None = None, *, stream: bool = False):
        """POST ``body`` to ``path``; returns an :class:`UpstreamResponse` (streaming when asked: the caller closes
        it)."""
        client = _async_client()
        try:
            response = await client.post(self.base_url + path, data=body, headers=self._inference_headers(headers))
            if stream:
                return UpstreamResponse(response)
            try:
                return UpstreamResponse(response, await response.read())
            finally:
                response.release()
        except TimeoutError as exc:
            raise WorkerUnavailable(f"{self.base_url} did not answer in time ({type(exc).__name__})") from None
        except aiohttp.ClientError as exc:
            raise WorkerUnavailable(f"{self.base_url} cannot be reached: {exc}") from None
