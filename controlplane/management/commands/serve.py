"""Start the control plane: the ASGI server (dashboard, API, gateway, websockets) and, around it, the background
services of the embedded mode (worker supervisor, metrics collector, scheduler). Ctrl-C stops everything."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand

from controlplane import runtime
from controlplane.services.bootstrap import bootstrap_demo
from controlplane.services.inventory import register_local_node
from controlplane.workers.client import close_async_clients

logger = logging.getLogger(__name__)


class Server(uvicorn.Server):
    """uvicorn re-raises the signal that stopped it once it has shut down, which would kill the process (SIGTERM)
    or interrupt it (SIGINT) before the background services are stopped. The signal has done its job by then, so it
    is forgotten: the services stop cleanly, workers drain, and the process exits 0."""

    @contextlib.contextmanager
    def capture_signals(self):
        with super().capture_signals():
            yield
            if self._captured_signals:
                logger.info("stopping on signal %s", ", ".join(str(s) for s in self._captured_signals))
            self._captured_signals.clear()


def site_url(host: str, port: int) -> str:
    """The address people reach this server at: its host (this machine's name when it listens everywhere)."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class Command(BaseCommand):
    help = "Serve the control plane on HOST:PORT (default 127.0.0.1:8000) with its background services."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host, port, **options):
        if "SITE_URL" not in os.environ:  # links in e-mails point at the address this server listens on
            settings.SITE_URL = site_url(host, port)
        node = register_local_node()
        self.stdout.write(f"Local node {node.hostname}: {node.cpu_cores} CPU cores, {node.memory_bytes} bytes memory.")
        demo = bootstrap_demo(node)
        if demo is not None:
            self.stdout.write(f"First start: deployed the bundled demo model as {demo.name!r}.")
        config = uvicorn.Config(
            "controlplane.asgi:application",
            host=host,
            port=port,
            lifespan="off",
            log_level="info",
            proxy_headers=False,
            timeout_graceful_shutdown=10,
        )
        asyncio.run(self.serve(Server(config), f"http://{host}:{port}/"))

    async def serve(self, server: uvicorn.Server, url: str) -> None:
        loop = asyncio.get_running_loop()
        services = await asyncio.to_thread(runtime.start_all, loop)
        self.stdout.write(f"Dashboard, API and gateway on {url}")
        try:
            await server.serve()
        finally:
            await asyncio.to_thread(runtime.stop_all, services)
            await close_async_clients()
