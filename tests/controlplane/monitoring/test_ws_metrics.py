"""``/ws/metrics/`` through the real ASGI application (Origin check, session auth, channel layer)."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.layers import get_channel_layer
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from controlplane.asgi import application
from controlplane.models import Node
from controlplane.monitoring import store as store_module
from controlplane.monitoring.service import deployment_group, node_group
from controlplane.monitoring.store import SampleStore
from controlplane.streaming.consumers import MetricsConsumer

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://localhost"


@pytest.fixture
def store(monkeypatch):
    fresh = SampleStore(3600)
    monkeypatch.setattr(store_module, "_default", fresh)
    return fresh


@pytest.fixture
def local_node(db):
    return Node.objects.create(hostname="here", cpu_cores=2, memory_bytes=2**34, is_local=True)


@pytest.fixture
def cookie(viewer) -> bytes:
    client = Client()
    client.force_login(viewer)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


def communicator(path="/ws/metrics/", origin=ORIGIN, cookie: bytes | None = None) -> WebsocketCommunicator:
    headers = [(b"host", b"localhost")]
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie is not None:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


async def test_without_a_login_the_websocket_is_refused(local_node):
    ws = communicator()
    connected, _ = await ws.connect()
    assert not connected
    await ws.disconnect()


async def test_another_origin_or_no_origin_is_refused_even_with_a_login(local_node, cookie):
    for origin in (b"http://evil.example", None):
        ws = communicator(origin=origin, cookie=cookie)
        connected, _ = await ws.connect()
        assert not connected, origin
        await ws.disconnect()


@pytest.mark.parametrize(
    "origin", [b"http://localhost:9999", b"https://localhost", b"ws://localhost", b"null", b"http://localhost.evil"]
)
async def test_another_port_or_scheme_on_an_allowed_host_is_refused(local_node, cookie, origin):
    ws = communicator(origin=origin, cookie=cookie)
    connected, _ = await ws.connect()
    assert not connected, origin
    await ws.disconnect()


async def test_an_origin_in_csrf_trusted_origins_gets_in(local_node, cookie, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["http://localhost:8443"]
    for origin in (b"http://localhost:8443", b"http://localhost:80"):
        ws = communicator(origin=origin, cookie=cookie)
        connected, _ = await ws.connect()
        assert connected, origin
        await ws.disconnect()


def test_a_wildcard_trusted_origin_matches_subdomains_on_its_scheme_and_port(settings):
    from controlplane.streaming.origin import is_same_origin

    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.org"]

    def scope(origin: bytes) -> dict:
        return {"type": "websocket", "headers": [(b"host", b"localhost"), (b"origin", origin)]}

    assert is_same_origin(scope(b"https://ops.example.org"))
    assert is_same_origin(scope(b"https://ops.example.org:443"))
    assert not is_same_origin(scope(b"http://ops.example.org"))
    assert not is_same_origin(scope(b"https://ops.example.org:8443"))
    assert not is_same_origin(scope(b"https://example.org.evil"))


async def test_the_scheme_behind_a_proxy_comes_from_its_header(local_node, cookie, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    headers = [(b"host", b"localhost"), (b"origin", b"https://localhost"), (b"x-forwarded-proto", b"https")]
    ws = WebsocketCommunicator(application, "/ws/metrics/", headers=[*headers, (b"cookie", cookie)])
    connected, _ = await ws.connect()
    assert connected
    await ws.disconnect()


async def test_a_signed_in_user_gets_the_backfill_then_every_sample(local_node, cookie, store):
    now = time.time()
    for i in range(5):
        store.add(now - 5 + i, {"host.cpu_pct": float(i), "worker.1.rss_bytes": 10.0 + i})
    ws = communicator(cookie=cookie)
    connected, _ = await ws.connect()
    assert connected
    hello = await ws.receive_json_from(timeout=5)
    assert hello["type"] == "hello" and hello["scope"] == "node" and hello["node"] == local_node.pk
    assert hello["backfill"]["series"]["host.cpu_pct"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(hello["backfill"]["ts"]) == 5
    layer = get_channel_layer()
    for seq in (1, 2):
        await layer.group_send(
            node_group(local_node.pk),
            {"type": "metrics.sample", "seq": seq, "ts": now, "published": now, "series": {"host.cpu_pct": 9.0}},
        )
    first = await ws.receive_json_from(timeout=5)
    second = await ws.receive_json_from(timeout=5)
    assert (first["type"], first["seq"], first["dropped"]) == ("sample", 1, 0)
    assert second["seq"] == 2 and second["series"] == {"host.cpu_pct": 9.0}
    await ws.send_json_to({"type": "ping", "t": 1})
    assert (await ws.receive_json_from(timeout=5))["type"] == "pong"
    await ws.disconnect()


async def test_a_deployment_scope_gets_only_that_workers_series(local_node, cookie, store, deployment):
    now = time.time()
    store.add(now - 1, {"host.cpu_pct": 1.0, f"worker.{deployment.pk}.rss_bytes": 5.0, "worker.999.rss_bytes": 7.0})
    ws = communicator(f"/ws/metrics/?deployment={deployment.pk}", cookie=cookie)
    connected, _ = await ws.connect()
    assert connected
    hello = await ws.receive_json_from(timeout=5)
    assert hello["scope"] == "deployment" and hello["group"] == deployment_group(deployment.pk)
    assert list(hello["backfill"]["series"]) == []  # the deployment's node is not this process's node
    await ws.disconnect()


@pytest.mark.parametrize(
    ("query", "code", "error"),
    [("deployment=abc", 4400, "deployment must be a deployment id"), ("node=424242", 4404, "no node with id 424242")],
)
async def test_a_bad_scope_is_told_why_and_closed(local_node, cookie, query, code, error):
    ws = communicator(f"/ws/metrics/?{query}", cookie=cookie)
    connected, _ = await ws.connect()
    assert connected
    assert await ws.receive_json_from(timeout=5) == {"type": "error", "error": error}
    assert (await ws.receive_output(timeout=5)) == {"type": "websocket.close", "code": code}


async def test_a_slow_client_loses_its_oldest_samples_and_never_blocks_the_sender(settings):
    settings.METRICS_CLIENT_BUFFER = 3
    consumer = MetricsConsumer()
    from collections import deque

    consumer.buffer, consumer.dropped, consumer.wakeup = deque(maxlen=3), 0, asyncio.Event()
    for seq in range(1, 8):  # the browser reads nothing meanwhile: each handler call returns at once
        await asyncio.wait_for(consumer.metrics_sample({"type": "metrics.sample", "seq": seq}), timeout=1)
    sent = []

    async def send_json(message):
        sent.append(message)

    consumer.send_json = send_json
    task = asyncio.ensure_future(consumer._send_loop())
    await asyncio.sleep(0.05)
    task.cancel()
    assert [m["seq"] for m in sent] == [5, 6, 7]
    assert {m["dropped"] for m in sent} == {4}
