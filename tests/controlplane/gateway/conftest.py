"""Fixtures for the /v1 gateway: a client on the real ASGI app, an inference token, and a stub worker (a real HTTP
server on a free port that answers like the worker: 200 for any body it can encode as UTF-8, SSE when asked)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from asgiref.sync import sync_to_async

from controlplane.asgi import application
from controlplane.choices import TokenScope
from controlplane.gateway.auth import forget_tokens
from controlplane.gateway.cachecalls import forget_outage
from controlplane.gateway.limits import forget_counts
from controlplane.gateway.routing import forget_routes
from controlplane.models import ApiToken, Deployment
from controlplane.workers.client import close_async_clients

BODIES = web.AppKey("bodies", list)


def _forget() -> None:
    forget_tokens()
    forget_routes()
    forget_outage()
    forget_counts()


@pytest.fixture(autouse=True)
def _fresh_caches(settings):
    settings.GATEWAY_WORKER_WAIT_S = 0  # refusals at once; test_gateway_wait.py sets a wait
    _forget()
    yield
    _forget()


@pytest.fixture
async def gateway() -> AsyncIterator[httpx.AsyncClient]:
    yield httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://127.0.0.1", timeout=httpx.Timeout(30)
    )
    await close_async_clients()  # the gateway's pool to the workers, opened on this test's loop


@pytest.fixture
def token(viewer) -> str:
    return ApiToken.issue(viewer, "gw", scope=TokenScope.INFERENCE)[1]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_openai_error(response, status, *, param=None, code=None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


async def _answer(request: web.Request) -> web.StreamResponse:
    try:
        body = json.loads(await request.read())
        json.dumps(body, ensure_ascii=False).encode()  # what the real worker trips on: lone surrogates
    except UnicodeEncodeError as exc:
        error = {"message": str(exc), "type": "server_error", "param": None, "code": None}
        return web.json_response({"error": error}, status=500)
    except ValueError:
        return web.json_response({"error": {"message": "bad json", "type": "invalid_request_error"}}, status=400)
    request.app[BODIES].append(body)
    if not (isinstance(body, dict) and body.get("stream") is True):
        return web.json_response(COMPLETION)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunk = {**COMPLETION, "usage": None}
    await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(f"data: {json.dumps({'choices': [], 'usage': COMPLETION['usage']})}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    return response


@pytest.fixture
async def stub_worker(deployment) -> AsyncIterator[web.Application]:
    """A stub worker serving ``deployment`` (``app[BODIES]`` lists what it received)."""
    app = web.Application()
    app[BODIES] = []
    app.router.add_post("/v1/completions", _answer)
    app.router.add_post("/v1/chat/completions", _answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await sync_to_async(Deployment.objects.filter(pk=deployment.pk).update)(worker_url=f"http://127.0.0.1:{port}")
    yield app
    await runner.cleanup()
