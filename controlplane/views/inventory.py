"""Node and GPU pages."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from controlplane.choices import Role
from controlplane.forms import GPUForm, NodeForm
from controlplane.models import GPU, Node
from controlplane.services import inventory
from controlplane.services.errors import Conflict

from .base import actor, form_page, role_required


def node_list(request):
    return render(request, "nodes/list.html", {"nodes": Node.objects.prefetch_related("gpus", "deployments")})


def node_detail(request, pk):
    node = get_object_or_404(Node.objects.prefetch_related("gpus"), pk=pk)
    return render(request, "nodes/detail.html", {"node": node, "deployments": node.deployments.all()})


def _save(request, form, instance):
    if instance is None:
        return lambda: inventory.create(actor(request), form._meta.model, **form.cleaned_data)
    return lambda: inventory.update(actor(request), type(instance).objects.get(pk=instance.pk), **form.cleaned_data)


@role_required(Role.OPERATOR)
def node_form(request, pk=None):
    node = get_object_or_404(Node, pk=pk) if pk else None
    form = NodeForm(request.POST or None, instance=node)
    return form_page(
        request,
        form,
        title=f"Edit {node}" if node else "Add a node",
        save=_save(request, form, node),
        success=lambda n: f"/nodes/{n.pk}/",
    )


@role_required(Role.OPERATOR)
def gpu_form(request, pk=None):
    gpu = get_object_or_404(GPU, pk=pk) if pk else None
    form = GPUForm(request.POST or None, instance=gpu, initial={"node": request.GET.get("node")})
    return form_page(
        request,
        form,
        title=f"Edit {gpu}" if gpu else "Add a GPU",
        save=_save(request, form, gpu),
        success=lambda g: f"/nodes/{g.node_id}/",
    )


@require_POST
@role_required(Role.ADMIN)
def inventory_delete(request, kind, pk):
    model = {"node": Node, "gpu": GPU}[kind]
    instance = get_object_or_404(model, pk=pk)
    back = "/nodes/" if kind == "node" else f"/nodes/{instance.node_id}/"
    try:
        inventory.delete(actor(request), instance)
    except Conflict as exc:
        messages.error(request, str(exc))
        return redirect(back if kind == "gpu" else f"/nodes/{pk}/")
    messages.success(request, f"Deleted {instance}.")
    return redirect(back)
