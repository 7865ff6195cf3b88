"""Start the control plane: the ASGI server (dashboard, API, websockets)."""

from __future__ import annotations

import logging

import uvicorn
from django.core.management.base import BaseCommand

from controlplane.services.inventory import register_local_node

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Serve the control plane on HOST:PORT (default 127.0.0.1:8000)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host, port, **options):
        node = register_local_node()
        self.stdout.write(f"Local node {node.hostname}: {node.cpu_cores} CPU cores, {node.memory_bytes} bytes memory.")
        config = uvicorn.Config(
            "controlplane.asgi:application", host=host, port=port, lifespan="off", log_level="info", proxy_headers=False
        )
        self.stdout.write(f"Dashboard and API on http://{host}:{port}/")
        uvicorn.Server(config).run()
