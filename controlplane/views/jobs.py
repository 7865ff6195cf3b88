"""Job pages: the job table with the scheduler's state, a job's history (charts of durations, outcomes and the
numbers its results carry), and "run now" for operators."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from controlplane.choices import JobOutcome, Role
from controlplane.jobs import status as job_service
from controlplane.jobs.heartbeat import scheduler_health
from controlplane.models import JobRun
from controlplane.services.errors import Conflict
from controlplane.services.fit import format_bytes

from .base import actor, role_required


def job_list(request):
    context = {"statuses": job_service.job_statuses(), "health": scheduler_health()}
    return render(request, "jobs/list.html", context)


def chart_data(job, runs: list[JobRun]) -> dict:
    """What the page's charts draw: per run its start (unix seconds), duration and outcome, and the job's result
    series (None where a run's result lacks the number)."""
    times = [run.started_at.timestamp() for run in runs]
    series = []
    for key, label, unit in job.series:
        values = [run.result.get(key) if isinstance(run.result.get(key), int | float) else None for run in runs]
        series.append({"label": label, "unit": unit, "values": values})
    return {
        "t": times,
        "duration": [run.duration_s for run in runs],
        "outcome": [run.outcome for run in runs],
        "outcomes": [[value, str(label)] for value, label in JobOutcome.choices if value != JobOutcome.RUNNING],
        "series": series,
    }


def summary(job, run: JobRun) -> str:
    """The run's charted numbers in words ("Sessions expired: 3; Memory freed: 1.5 MiB")."""
    parts = []
    for key, label, unit in job.series:
        value = run.result.get(key)
        if value is not None:
            parts.append(f"{label}: {format_bytes(value) if unit == 'bytes' else value}")
    return "; ".join(parts)


def job_detail(request, name):
    try:
        status = job_service.job_status(name)
    except LookupError:
        raise Http404(f"There is no job called {name!r}.") from None
    history = job_service.history(name)
    for run in history:
        run.summary = summary(status.job, run)
    context = {
        "status": status,
        "chart": chart_data(status.job, history),
        "runs": list(reversed(history))[:50],
        "health": scheduler_health(),
    }
    return render(request, "jobs/detail.html", context)


@require_POST
@role_required(Role.OPERATOR)
def job_run(request, name):
    try:
        outcome = job_service.request_run(actor(request), name)
    except LookupError:
        raise Http404(f"There is no job called {name!r}.") from None
    except Conflict as exc:
        messages.error(request, str(exc))
    else:
        if outcome.run is None:
            messages.success(request, f"Job {name} is queued; the scheduler starts it within a few seconds.")
        else:
            messages.success(request, f"Job {name} ran here (no scheduler is running): {outcome.run.outcome}.")
    return redirect(f"/jobs/{name}/")
