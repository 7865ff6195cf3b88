"""Websocket routes."""

from django.urls import path

from .consumers import MetricsConsumer

# channels' URLRouter takes django.urls.path with an ASGI app; django-stubs types path() for views only.
websocket_urlpatterns: list = [path("ws/metrics/", MetricsConsumer.as_asgi())]  # type: ignore[arg-type]
