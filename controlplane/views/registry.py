"""Model version pages."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from controlplane.choices import Role
from controlplane.forms import ModelVersionEditForm, ModelVersionForm
from controlplane.models import ModelVersion
from controlplane.services import registry
from controlplane.services.errors import Conflict

from .base import actor, form_page, paginate, role_required


def model_list(request):
    versions = paginate(request, ModelVersion.objects.select_related("created_by"))
    return render(request, "models/list.html", {"page": versions})


def model_detail(request, pk):
    version = get_object_or_404(ModelVersion, pk=pk)
    revisions = version.revisions.select_related("deployment").order_by("-created_at")[:20]
    return render(request, "models/detail.html", {"version": version, "revisions": revisions})


@role_required(Role.OPERATOR)
def model_create(request):
    form = ModelVersionForm(request.POST or None)

    def save():
        data = {k: v for k, v in form.cleaned_data.items() if v not in ("", None)}
        return registry.register_model_version(actor(request), **data)

    return form_page(
        request,
        form,
        title="Register a model version",
        save=save,
        success=lambda v: f"/models/{v.pk}/",
        done="Registered; size and checksum measured.",
    )


@role_required(Role.OPERATOR)
def model_edit(request, pk):
    version = get_object_or_404(ModelVersion, pk=pk)
    form = ModelVersionEditForm(request.POST or None, instance=version)

    def save():
        fresh = ModelVersion.objects.get(pk=pk)
        return registry.update_model_version(actor(request), fresh, **form.cleaned_data)

    return form_page(request, form, title=f"Edit {version}", save=save, success=lambda v: f"/models/{v.pk}/")


@require_POST
@role_required(Role.ADMIN)
def model_delete(request, pk):
    version = get_object_or_404(ModelVersion, pk=pk)
    try:
        registry.delete_model_version(actor(request), version)
    except Conflict as exc:
        messages.error(request, str(exc))
        return redirect(f"/models/{pk}/")
    messages.success(request, f"Deleted {version}.")
    return redirect("/models/")
