"""What the ASGI layer answers before Django: static files (Starlette's StaticFiles: ETags, ranges, no thread hops)
and the /v1 gateway (a lean Starlette app). Django's middleware then stays fully async for everything else.
Static files work offline: everything is in ``static/`` or in installed packages (the admin, the API reference)."""

from __future__ import annotations

from django.conf import settings
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse
from starlette.staticfiles import StaticFiles

from controlplane.gateway.app import app as gateway

PACKAGES: list[str | tuple[str, str]] = [
    ("django.contrib.admin", "static"),
    ("rest_framework", "static"),
    ("drf_spectacular_sidecar", "static"),
]


def build_static_app() -> StaticFiles:
    root = settings.STATIC_ROOT or settings.STATICFILES_DIRS[0]
    packages = [] if settings.STATIC_ROOT else PACKAGES
    return StaticFiles(directory=str(root), packages=packages, check_dir=True)


class StaticFilesRouter:
    """``/static/…`` to the static app, ``/v1/…`` to the gateway, everything else to ``app`` (Django)."""

    def __init__(self, app, prefix: str | None = None):
        self.app = app
        self.gateway = gateway
        self.prefix = (prefix or settings.STATIC_URL).rstrip("/")
        self.static = build_static_app()

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/v1" or path.startswith("/v1/")):
            await self.gateway(scope, receive, send)
            return
        if scope["type"] == "http" and path.startswith(self.prefix + "/"):
            scope = {**scope, "path": path[len(self.prefix) :], "root_path": scope.get("root_path", "") + self.prefix}
            try:
                await self.static(scope, receive, send)
            except HTTPException as exc:  # 404 / 405, normally turned into a response by a Starlette app
                await PlainTextResponse(exc.detail, status_code=exc.status_code)(scope, receive, send)
            return
        await self.app(scope, receive, send)
