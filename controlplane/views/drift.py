"""The drift page: checks over time (how close each came to firing) and the latest checks with their reasons."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from controlplane.choices import DriftKind, Role
from controlplane.drift import checks as driftchecks
from controlplane.models import Deployment, DriftCheck

from .base import role_required

HISTORY = 200


def closeness(check: DriftCheck) -> float | None:
    """The statistic as a share of its threshold: 1 is where the check fires (a p-value fires below alpha)."""
    if check.statistic is None or check.threshold in (None, 0):
        return None
    if check.kind == DriftKind.DISTRIBUTION:
        return round(check.threshold / max(check.statistic, 1e-12), 4)
    return round(check.statistic / check.threshold, 4)


def drift_page(request):
    deployments = list(Deployment.objects.select_related("current_revision__model_version"))
    charts = []
    for deployment in deployments:
        for kind, label in DriftKind.choices:
            checks = list(DriftCheck.objects.filter(deployment=deployment, kind=kind)[:HISTORY])[::-1]
            points = [(int(c.started_at.timestamp()), closeness(c)) for c in checks if closeness(c) is not None]
            if points:
                charts.append(
                    {
                        "id": f"d{deployment.pk}-{kind}",
                        "title": f"{deployment.name}: {label}",
                        "t": [p[0] for p in points],
                        "v": [p[1] for p in points],
                    }
                )
    recent = DriftCheck.objects.select_related("deployment", "model_version")[:50]
    return render(request, "drift/page.html", {"charts": charts, "recent": recent, "deployments": deployments})


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
