"""Metrics in the REST API: the series a node has, history queries, the latest tick, leak detection; and the
Prometheus exposition at ``/metrics`` (same authentication as the API: a session or a bearer token)."""

from __future__ import annotations

import hmac
import json
from typing import cast

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import authentication, renderers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from controlplane.choices import Role
from controlplane.models import Node
from controlplane.monitoring import history
from controlplane.monitoring.prometheus import exposition
from controlplane.monitoring.service import current
from controlplane.monitoring.store import default_store
from controlplane.services.errors import InvalidInput

from .params import parse_id

__all__ = ["MetricsViewSet", "PrometheusView"]

NODE = OpenApiParameter("node", int, description="Node id; default: the node this control plane runs on")


def _node(request) -> Node:
    node_id = parse_id(request.query_params.get("node"), "node", "a node id")
    if node_id is None:
        node = Node.objects.filter(is_local=True).first()
        if node is None:
            raise InvalidInput.field("node", "no local node is registered; give a node id")
        return node
    node = Node.objects.filter(pk=node_id).first()
    if node is None:
        raise InvalidInput.field("node", f"no node with id {request.query_params['node']}")
    return node


def _service():
    return current()


class MetricsViewSet(viewsets.ViewSet):
    """Live and historical metrics: GPU, host and worker series (names in docs/monitoring.md)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def list(self, request):
        return Response(
            {
                "series": request.build_absolute_uri("series/"),
                "query": request.build_absolute_uri("query/"),
                "latest": request.build_absolute_uri("latest/"),
                "leaks": request.build_absolute_uri("leaks/"),
                "websocket": "/ws/metrics/",
            }
        )

    @extend_schema(parameters=[NODE], responses=OpenApiTypes.OBJECT)
    @action(detail=False)
    def series(self, request):
        """Series names with data on the node (live window or rollups)."""
        node = _node(request)
        names = history.series_names(node, default_store())
        return Response({"node": node.pk, "count": len(names), "series": names})

    @extend_schema(
        parameters=[
            NODE,
            OpenApiParameter("series", str, many=True, required=True, description="Repeat, or separate with commas"),
            OpenApiParameter("start", str, description="Epoch seconds, ISO 8601, or negative seconds from now"),
            OpenApiParameter("end", str, description="As start; default: now"),
            OpenApiParameter("step", float, description="Bucket width in seconds; under 60: raw samples"),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=False)
    def query(self, request):
        """Points ``[t, mean, min, max]`` per bucket of ``step`` seconds; at most 5,000 per series."""
        store = default_store()
        query = history.parse_query(request.query_params, node=_node(request), store=store)
        return Response(history.run_query(query, store))

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=False)
    def latest(self, request):
        """The collector's last tick in this process (404-free: ``ts`` is null before the first one)."""
        frame = default_store().latest()
        service = _service()
        snapshot = service.last_snapshot if service else None
        return Response(
            {
                "ts": frame[0] if frame else None,
                "series": frame[1] if frame else {},
                "nvml": {"available": snapshot.nvml_available, "reason": snapshot.nvml_reason} if snapshot else None,
            }
        )

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=False)
    def leaks(self, request):
        """The leak detector's verdict on every watched memory series of the local workers."""
        service = _service()
        rows = service.leak_statuses() if service else []
        return Response({"count": len(rows), "results": rows})


class PrometheusRenderer(renderers.BaseRenderer):
    media_type = "text/plain"
    format = "prometheus"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        return json.dumps(data).encode()  # an error (401/403) from the permission checks


class Scraper:
    """Who sent METRICS_TOKEN: may read /metrics, nothing else."""

    is_authenticated = True
    is_active = True
    username = "metrics-scraper"
    effective_role = Role.VIEWER

    def has_role(self, role: str) -> bool:
        return role == Role.VIEWER


class MetricsTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <METRICS_TOKEN>`` when that setting is set; any other bearer token goes on to the
    API-token check."""

    def authenticate(self, request):
        expected = settings.METRICS_TOKEN
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        # compared as bytes: compare_digest raises TypeError on a str that is not ASCII (any header can carry one)
        given = token.strip().encode("utf-8", "surrogateescape")
        if expected and scheme.lower() == "bearer" and hmac.compare_digest(given, expected.encode()):
            return Scraper(), None
        return None

    def authenticate_header(self, request) -> str:
        return "Bearer"


class PrometheusView(APIView):
    """``GET /metrics`` for Prometheus (scrape with ``authorization: {type: Bearer, credentials: <token>}``, the
    token being METRICS_TOKEN or any API token)."""

    renderer_classes = [PrometheusRenderer]
    # api_settings imports the classes named in the setting (the stubs type the setting's strings)
    authentication_classes = [
        MetricsTokenAuthentication,
        *cast("list[type[authentication.BaseAuthentication]]", api_settings.DEFAULT_AUTHENTICATION_CLASSES),
    ]

    @extend_schema(exclude=True)
    def get(self, request):
        return Response(exposition(), content_type="text/plain; version=0.0.4; charset=utf-8")
