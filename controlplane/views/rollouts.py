"""Rollout pages: start one from a deployment, follow it live, act on it."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from controlplane.choices import Precision, Role, RolloutStrategy
from controlplane.models import Deployment, ModelVersion, Rollout
from controlplane.rollouts import machine as rollouts
from controlplane.services.errors import Conflict, InvalidInput

from .base import actor, form_page, role_required

ACTIONS = {
    "promote": lambda a, r: rollouts.promote(a, r),
    "pause": lambda a, r: rollouts.pause(a, r),
    "resume": lambda a, r: rollouts.resume(a, r),
    "rollback": lambda a, r: rollouts.rollback(a, r, f"rolled back by {a.name} from the dashboard"),
    "abort": lambda a, r: rollouts.abort(a, r),
}


class RolloutForm(forms.Form):
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.all(),
        required=False,
        help_text="Empty: keep the current version (a config change only).",
    )
    precision = forms.ChoiceField(choices=[("", "unchanged"), *Precision.choices], required=False)
    router_weights = forms.CharField(required=False, help_text="Comma-separated, one per expert; empty: unchanged.")
    strategy = forms.ChoiceField(choices=RolloutStrategy.choices, initial=RolloutStrategy.CANARY)
    steps = forms.CharField(required=False, initial="10, 50, 100", help_text="Canary traffic per step, in percent.")
    bake_s = forms.IntegerField(min_value=0, max_value=604_800, initial=300, label="Bake time per step (s)")
    comment = forms.CharField(required=False, max_length=500)

    @staticmethod
    def _numbers(raw: str, field: str, kind=float):
        try:
            return [kind(part) for part in raw.replace(";", ",").split(",") if part.strip()] or None
        except ValueError:
            raise forms.ValidationError({field: "must be numbers separated by commas"}) from None

    def clean(self):
        data = super().clean()
        data["weights"] = self._numbers(data.get("router_weights") or "", "router_weights")
        data["step_list"] = self._numbers(data.get("steps") or "", "steps", int)
        return data

    def create(self, who, deployment: Deployment) -> Rollout:
        data = self.cleaned_data
        config = {}
        if data["precision"]:
            config["precision"] = data["precision"]
        if data["weights"] is not None:
            config["router_weights"] = data["weights"]
        steps = data["step_list"] if data["strategy"] == RolloutStrategy.CANARY else None
        return rollouts.create_rollout(
            who,
            deployment,
            model_version=data["model_version"],
            config=config,
            strategy=data["strategy"],
            steps=steps,
            bake_s=data["bake_s"],
            comment=data["comment"],
        )


@role_required(Role.OPERATOR)
def rollout_create(request, pk):
    deployment = get_object_or_404(Deployment, pk=pk)
    form = RolloutForm(request.POST or None)
    return form_page(
        request,
        form,
        title=f"Roll out to {deployment.name}",
        save=lambda: form.create(actor(request), deployment),
        success=lambda r: f"/rollouts/{r.pk}/",
        done="Rollout started.",
    )


def gate_rows(rollout: Rollout) -> list[dict]:
    """Per gate evaluation (one per step): each gate's value, threshold and verdict, for the charts and table."""
    rows = []
    for event in rollout.events.filter(kind="gates"):
        for gate, result in (event.data.get("results") or {}).items():
            rows.append(
                {"at": event.at, "step": event.message.split(" ")[1] if event.message else "", "gate": gate, **result}
            )
    return rows


def rollout_detail(request, pk):
    rollout = get_object_or_404(
        Rollout.objects.select_related("deployment", "target_model_version", "base_revision__model_version"), pk=pk
    )
    rows = gate_rows(rollout)
    charts = {}
    for row in rows:
        if row.get("value") is not None:
            chart = charts.setdefault(
                row["gate"], {"gate": row["gate"], "threshold": row.get("threshold"), "steps": [], "values": []}
            )
            chart["steps"].append(len(chart["steps"]) + 1)
            chart["values"].append(row["value"])
    context = {
        "rollout": rollout,
        "events": rollout.events.all(),
        "gates": rows,
        "charts": list(charts.values()),
        "actions": list(ACTIONS),
    }
    return render(request, "rollouts/detail.html", context)


@require_POST
@role_required(Role.OPERATOR)
def rollout_action(request, pk, action):
    rollout = get_object_or_404(Rollout, pk=pk)
    try:
        ACTIONS[action](actor(request), rollout)
    except (Conflict, InvalidInput) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Rollout {rollout.pk}: {action} done.")
    return redirect(f"/rollouts/{pk}/")
