"""``/ws/metrics/``: live samples for the dashboard.

Only signed-in users get in (the session cookie; anyone else is refused before the handshake completes), and only
from an allowed Origin (``AllowedHostsOriginValidator`` in ``asgi.py``). Query: ``?node=ID`` (every series of a
node; the default is the local node) or ``?deployment=ID`` (one worker's series: those whose ``{deployment}`` part,
in the table of series, is that id).

On connect the client gets ``{"type": "hello", ...}`` with the scope and the raw samples of the last
``backfill`` seconds (default 300, at most the live window) when they are in this process, then one
``{"type": "sample", ...}`` per collector tick. Each client has its own bounded buffer: a browser that reads slowly
loses its oldest samples (``dropped`` counts them), never slows the collector or the other clients.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from controlplane.models import Deployment, Node
from controlplane.monitoring.series import deployment_of
from controlplane.monitoring.service import deployment_group, node_group
from controlplane.monitoring.store import default_store

__all__ = ["MetricsConsumer"]

CLOSE_UNAUTHENTICATED = 4401
CLOSE_BAD_QUERY = 4400
CLOSE_NOT_FOUND = 4404


class MetricsConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)  # before accept: the handshake is refused (HTTP 403)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            scope = await self._scope(query)
        except (ValueError, LookupError) as exc:
            await self.accept()
            await self.send_json({"type": "error", "error": str(exc)})
            await self.close(code=CLOSE_NOT_FOUND if isinstance(exc, LookupError) else CLOSE_BAD_QUERY)
            return
        self.group = scope["group"]
        self.buffer: deque[dict] = deque(maxlen=settings.METRICS_CLIENT_BUFFER)
        self.dropped = 0
        self.wakeup = asyncio.Event()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", **scope, **self._backfill(query, scope)})
        self.sender = asyncio.ensure_future(self._send_loop())

    async def disconnect(self, code) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        sender = getattr(self, "sender", None)
        if sender is not None:
            sender.cancel()

    async def receive_json(self, content, **kwargs) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "t": content.get("t"), "server_time": time.time()})

    # --- from the channel layer -----------------------------------------------------------------------------------
    async def metrics_sample(self, event: dict) -> None:
        """Never awaits the browser: the message joins this client's buffer, the oldest falls out when it is full."""
        if len(self.buffer) == self.buffer.maxlen:
            self.dropped += 1
        self.buffer.append(event)
        self.wakeup.set()

    async def _send_loop(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.buffer:
                event = self.buffer.popleft()
                message = {k: v for k, v in event.items() if k != "type"}
                message["type"] = "sample"
                message["dropped"] = self.dropped
                await self.send_json(message)

    # --- helpers --------------------------------------------------------------------------------------------------
    @database_sync_to_async
    def _scope(self, query: dict[str, list[str]]) -> dict:
        deployment_id = next(iter(query.get("deployment") or []), None)
        node_id = next(iter(query.get("node") or []), None)
        if deployment_id:
            if not deployment_id.isdigit():
                raise ValueError("deployment must be a deployment id")
            deployment = Deployment.objects.filter(pk=int(deployment_id)).first()
            if deployment is None:
                raise LookupError(f"no deployment with id {deployment_id}")
            return {
                "scope": "deployment",
                "deployment": deployment.pk,
                "node": deployment.node_id,
                "group": deployment_group(deployment.pk),
                "local": Node.objects.filter(pk=deployment.node_id, is_local=True).exists(),
            }
        if node_id:
            if not node_id.isdigit():
                raise ValueError("node must be a node id")
            node = Node.objects.filter(pk=int(node_id)).first()
        else:
            node = Node.objects.filter(is_local=True).first()
        if node is None:
            raise LookupError(f"no node with id {node_id}" if node_id else "no local node is registered yet")
        return {"scope": "node", "node": node.pk, "group": node_group(node.pk), "local": node.is_local}

    def _backfill(self, query: dict[str, list[str]], scope: dict) -> dict:
        try:
            seconds = float((query.get("backfill") or ["300"])[0])
        except ValueError:
            seconds = 300.0
        seconds = max(0.0, min(seconds, float(settings.METRICS_LIVE_WINDOW_S)))
        if not scope["local"] or seconds == 0:
            return {"backfill": {"ts": [], "series": {}}}
        deployment = scope["deployment"] if scope["scope"] == "deployment" else None
        frames = default_store().frames(
            time.time() - seconds, (lambda name: deployment_of(name) == deployment) if deployment else None
        )
        names = sorted({name for _, values in frames for name in values})
        return {
            "backfill": {
                "ts": [ts for ts, _ in frames],
                "series": {name: [values.get(name) for _, values in frames] for name in names},
            }
        }
