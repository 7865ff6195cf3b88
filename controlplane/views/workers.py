"""Worker actions on the deployment page, the sessions page and the usage page."""

from datetime import timedelta

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from controlplane.choices import Role
from controlplane.models import Deployment
from controlplane.services.errors import Conflict, InvalidInput
from controlplane.workers import actions as workers

from .base import actor, role_required

ACTIONS = {
    "start": "Started; the supervisor brings the worker up.",
    "stop": "Stopped; the worker drains and exits.",
}


@require_POST
@role_required(Role.OPERATOR)
def worker_action(request, pk, action):
    deployment = get_object_or_404(Deployment, pk=pk)
    try:
        if action == "restart":
            plan = workers.request_restart(actor(request), deployment)
            (messages.success if plan.rolling else messages.warning)(request, f"Restart requested. {plan.detail}")
        else:
            workers.set_running(actor(request), deployment, action == "start")
            messages.success(request, ACTIONS[action])
    except (Conflict, InvalidInput) as exc:
        messages.error(request, str(exc))
    return redirect(f"/deployments/{pk}/#worker")


def session_list(request):
    deployments = Deployment.objects.exclude(worker_url="")
    sessions, errors = workers.list_sessions(deployments)
    sessions.sort(key=lambda row: row.get("idle_s", 0))
    return render(request, "workers/sessions.html", {"sessions": sessions, "errors": errors})


@require_POST
@role_required(Role.OPERATOR)
def session_end(request, pk, session_id):
    deployment = get_object_or_404(Deployment, pk=pk)
    try:
        result = workers.end_session(actor(request), deployment, session_id)
    except (Conflict, InvalidInput) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Ended session {session_id}; freed {result.get('freed_bytes', 0)} bytes.")
    return redirect("/sessions/")


def usage(request):
    hours = request.GET.get("hours", "24")
    hours = int(hours) if hours.isdigit() and 0 < int(hours) <= 24 * 90 else 24
    since = timezone.now() - timedelta(hours=hours)
    context = {
        "hours": hours,
        "by_token": workers.usage_summary(since=since, group_by="token"),
        "by_deployment": workers.usage_summary(since=since, group_by="deployment"),
    }
    return render(request, "workers/usage.html", context)
