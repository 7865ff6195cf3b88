"""The live page: GPU, host and worker charts fed by /ws/metrics/, the last hour from the history API, and the leak
detector's verdicts. Which series go on which chart, with what legend and unit, comes from the table of series
(``monitoring/series.py``), sent to the page as ``live-series``."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.shortcuts import render

from controlplane.models import Deployment, Node
from controlplane.monitoring.series import page_table


def _scope(request, nodes: list[Node], deployments: list[Deployment]) -> dict:
    """What to show: ``?deployment=ID`` or ``?node=ID``; anything else falls back to the local node with a message."""
    raw_deployment = request.GET.get("deployment", "")
    raw_node = request.GET.get("node", "")
    if raw_deployment:
        match = next((d for d in deployments if str(d.pk) == raw_deployment), None)
        if match is not None:
            return {"kind": "deployment", "deployment": match.pk, "node": match.node_id, "title": match.name}
        messages.error(request, f"deployment: there is no deployment with id “{raw_deployment}”; showing this node.")
    elif raw_node:
        node = next((n for n in nodes if str(n.pk) == raw_node), None)
        if node is not None:
            return {"kind": "node", "node": node.pk, "title": node.hostname}
        messages.error(request, f"node: there is no node with id “{raw_node}”; showing this node.")
    local = next((n for n in nodes if n.is_local), nodes[0] if nodes else None)
    return {"kind": "node", "node": local.pk if local else None, "title": local.hostname if local else "no node"}


def live(request):
    nodes = list(Node.objects.order_by("hostname"))
    deployments = list(Deployment.objects.select_related("node").order_by("name"))
    scope = _scope(request, nodes, deployments)
    query = f"deployment={scope['deployment']}" if scope["kind"] == "deployment" else f"node={scope['node']}"
    config = {
        "ws": f"/ws/metrics/?{query}",
        "series_api": f"/api/v1/metrics/series/?node={scope['node']}",
        "query_api": "/api/v1/metrics/query/",
        "leaks_api": "/api/v1/metrics/leaks/",
        "node": scope["node"],
        "deployment": scope.get("deployment"),
        "workers": {str(d.pk): d.name for d in deployments},
        "window_s": 300,
        "interval_s": settings.METRICS_INTERVAL_S,
    }
    return render(
        request,
        "live.html",
        {"scope": scope, "nodes": nodes, "deployments": deployments, "config": config, "series_table": page_table()},
    )
