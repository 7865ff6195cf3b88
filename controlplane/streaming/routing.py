"""Websocket routes."""

from django.urls import path

from .consumers import MetricsConsumer

websocket_urlpatterns: list = [path("ws/metrics/", MetricsConsumer.as_asgi())]
