"""The overview page."""

from django.shortcuts import render

from controlplane.models import AuditEvent, Deployment, ModelVersion, Node


def overview(request):
    context = {
        "deployments": Deployment.objects.select_related("current_revision__model_version", "node"),
        "nodes": Node.objects.prefetch_related("gpus"),
        "model_count": ModelVersion.objects.count(),
        "recent_events": AuditEvent.objects.all()[:10],
    }
    return render(request, "overview.html", context)
