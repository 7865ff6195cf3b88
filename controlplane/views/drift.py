"""The drift page: checks over time (how close each came to firing) and the latest checks with their reasons."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from controlplane.choices import Role
from controlplane.drift import checks as driftchecks
from controlplane.models import Deployment, DriftCheck

from .base import role_required

HISTORY = 200


def drift_page(request):
    deployments = list(Deployment.objects.select_related("current_revision__model_version"))
    charts = []
    for deployment in deployments:
        for entry in driftchecks.CHECKS:
            checks = list(DriftCheck.objects.filter(deployment=deployment, kind=entry.name)[:HISTORY])[::-1]
            closeness = [(int(c.started_at.timestamp()), driftchecks.closeness(c)) for c in checks]
            points = [(at, value) for at, value in closeness if value is not None]
            if points:
                charts.append(
                    {
                        "id": f"d{deployment.pk}-{entry.name}",
                        "title": f"{deployment.name}: {entry.label}",
                        "t": [p[0] for p in points],
                        "v": [p[1] for p in points],
                    }
                )
    recent = DriftCheck.objects.select_related("deployment", "model_version")[:50]
    context = {"charts": charts, "recent": recent, "deployments": deployments, "checks": list(driftchecks.CHECKS)}
    return render(request, "drift/page.html", context)


def drift_detail(request, pk):
    check = get_object_or_404(DriftCheck.objects.select_related("deployment", "model_version"), pk=pk)
    return render(request, "drift/detail.html", {"check": check})


@require_POST
@role_required(Role.OPERATOR)
def drift_run(request, pk):
    deployment = get_object_or_404(Deployment, pk=pk)
    checks = driftchecks.run_checks(deployment, trigger="manual")
    summary = ", ".join(f"{c.get_kind_display()}: {c.get_verdict_display()}" for c in checks)
    messages.success(request, f"Checked {deployment.name}: {summary}.")
    return redirect("/drift/")
