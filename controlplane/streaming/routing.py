"""Websocket routes."""

from django.urls import path

from .consumers import MetricsConsumer
from .origin import SameOriginValidator

# Every route checks the Origin's scheme, host and port (asgi.py's AllowedHostsOriginValidator checks the host only).
# channels' URLRouter takes django.urls.path with an ASGI app.
websocket_urlpatterns: list = [path("ws/metrics/", SameOriginValidator(MetricsConsumer.as_asgi()))]
