"""The websocket's Origin must be this site's own origin (scheme, host and port), or one in CSRF_TRUSTED_ORIGINS.

``AllowedHostsOriginValidator`` only checks the host against ALLOWED_HOSTS: a page on another port or scheme of an
allowed host (``http://127.0.0.1:9999``, ``https://127.0.0.1``) is another origin, and would get in.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings

__all__ = ["SameOriginValidator", "is_same_origin"]

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def _origin(url: str) -> Origin | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _site_scheme(scope: dict[str, Any], headers: dict[bytes, bytes]) -> str:
    if scope.get("scheme") in ("wss", "https"):
        return "https"
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:  # ("HTTP_X_FORWARDED_PROTO", "https")
        name = proxy[0].removeprefix("HTTP_").replace("_", "-").lower().encode()
        if headers.get(name, b"").decode("latin-1").split(",")[0].strip() == proxy[1]:
            return "https"
    return "http"


def _trusted(origin: Origin) -> bool:
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        wildcard = "://*." in entry
        trusted = _origin(entry.replace("://*.", "://", 1))
        if trusted is None or (trusted[0], trusted[2]) != (origin[0], origin[2]):
            continue
        if origin[1] == trusted[1] or (wildcard and origin[1].endswith("." + trusted[1])):
            return True
    return False


def is_same_origin(scope: dict[str, Any]) -> bool:
    headers = dict(scope.get("headers") or [])
    raw_origin = headers.get(b"origin")
    raw_host = headers.get(b"host")
    if not raw_origin or not raw_host:
        return False
    origin = _origin(raw_origin.decode("latin-1"))
    if origin is None:
        return False
    site = _origin(f"{_site_scheme(scope, headers)}://{raw_host.decode('latin-1')}")
    return origin == site or _trusted(origin)


class SameOriginValidator:
    """ASGI middleware: refuse the websocket handshake (HTTP 403) unless :func:`is_same_origin`."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not is_same_origin(scope):
            return await WebsocketDenier()(scope, receive, send)  # type: ignore[arg-type]
        return await self.application(scope, receive, send)
