"""Deployment pages: list, detail with revision history and diff, create, edit, rollback."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from controlplane.choices import DeploymentStatus, DesiredState, Role
from controlplane.forms import DeploymentForm
from controlplane.models import Deployment
from controlplane.services import deployments
from controlplane.services.deployment_config import CONFIG_FIELDS
from controlplane.services.errors import InvalidInput
from controlplane.services.fit import estimate_memory
from controlplane.services.serving import cache_stats
from controlplane.workers import actions as workers

from .base import actor, form_page, role_required


def deployment_list(request):
    queryset = Deployment.objects.select_related("current_revision__model_version", "node")
    return render(request, "deployments/list.html", {"deployments": queryset})


def _diff(deployment, request):
    """The diff between the revisions named by ``?from=&to=`` (default: the previous and the current one)."""
    revisions = {r.number: r for r in deployment.revisions.select_related("model_version")}
    current = deployment.current_revision.number
    try:
        newer = int(request.GET.get("to", current))
        older = int(request.GET.get("from", newer - 1))
    except ValueError:
        return None, "Revision numbers must be whole numbers."
    if older not in revisions or newer not in revisions:
        return None, None if older < 1 else f"No revision {older if older not in revisions else newer}."
    return {"from": older, "to": newer, "changes": deployments.revision_diff(revisions[older], revisions[newer])}, None


def _busy(deployment: Deployment) -> bool:
    """Is a worker starting, or a restart requested and not done? Then the page follows the status live."""
    if deployment.desired_state != DesiredState.RUNNING:
        return False
    requested, started = deployment.restart_requested_at, deployment.worker_started_at
    pending = requested is not None and (started is None or requested > started)
    return pending or deployment.status == DeploymentStatus.STARTING or "restarting" in deployment.status_detail


def deployment_detail(request, pk):
    deployment = get_object_or_404(Deployment.objects.select_related("current_revision__model_version", "node"), pk=pk)
    diff, diff_error = _diff(deployment, request)
    revision = deployment.current_revision
    estimate = estimate_memory(revision.model_version, revision.config, on_gpu=deployment.gpus.exists())
    context = {
        "deployment": deployment,
        "revisions": deployment.revisions.select_related("model_version", "created_by"),
        "config_rows": [
            (name, spec, deployment.config.get(name, spec.default)) for name, spec in CONFIG_FIELDS.items()
        ],
        "restart": workers.restart_plan(deployment) if deployment.desired_state == DesiredState.RUNNING else None,
        "busy": _busy(deployment),
        "diff": diff,
        "diff_error": diff_error,
        "estimate": estimate,
        "worker": workers.live_state(deployment) if deployment.worker_url else None,
        "events": deployment.worker_events.all()[:15],
        "cache": cache_stats(deployment.pk),
        "rollouts": deployment.rollouts.select_related("target_model_version")[:20],
    }
    return render(request, "deployments/detail.html", context)


@role_required(Role.OPERATOR)
def deployment_create(request):
    form = DeploymentForm(request.POST or None)

    def save():
        data = form.cleaned_data
        return deployments.create_deployment(
            actor(request),
            name=data["name"],
            model_version=data["model_version"],
            node=data["node"],
            gpus=list(data["gpus"]),
            config=form.config_changes(),
            desired_state=data["desired_state"],
            comment=data["comment"],
        )

    return form_page(
        request,
        form,
        title="New deployment",
        save=save,
        success=lambda d: f"/deployments/{d.pk}/",
        done="Deployment created.",
    )


@role_required(Role.OPERATOR)
def deployment_edit(request, pk):
    deployment = get_object_or_404(Deployment, pk=pk)
    form = DeploymentForm(request.POST or None, editing=True, initial=DeploymentForm.initial_from(deployment))

    def save():
        data = form.cleaned_data
        return deployments.update_deployment(
            actor(request),
            deployment,
            model_version=data["model_version"],
            config=form.config_changes(),
            gpus=list(data["gpus"]),
            desired_state=data["desired_state"],
            comment=data["comment"],
        )

    return form_page(
        request,
        form,
        title=f"Change {deployment}",
        save=save,
        success=lambda d: f"/deployments/{d.pk}/",
        done="Saved as a new revision (if anything changed).",
    )


@require_POST
@role_required(Role.OPERATOR)
def deployment_rollback(request, pk):
    deployment = get_object_or_404(Deployment, pk=pk)
    try:
        number = int(request.POST.get("revision", ""))
        deployments.rollback_deployment(actor(request), deployment, number)
    except ValueError:
        messages.error(request, "revision: must be a revision number")
    except InvalidInput as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Restored revision {number} as a new revision.")
    return redirect(f"/deployments/{pk}/")
