"""Alert pages: the alert list (open ones first), an alert with its chart, figures, likely cause and every e-mail
attempt, acknowledge/resolve buttons, and the rules (list, detail, create, edit, delete)."""

from __future__ import annotations

import json
import re

from django import forms
from django.contrib import messages
from django.db.models import Case, Count, IntegerField, Q, Value, When
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from controlplane.alerts import delivery, rules, service
from controlplane.alerts.charts import render_chart
from controlplane.alerts.messages import display_cause, figure_rows, format_threshold
from controlplane.choices import AlertSeverity, AlertState, NotificationStatus, Role
from controlplane.models import Alert, AlertRule, Deployment, Notification
from controlplane.models.alerts import OPEN_STATES
from controlplane.services.errors import Conflict, InvalidInput, flatten_errors

from .base import actor, form_page, paginate, role_required

STATE_ORDER = Case(
    When(state=AlertState.FIRING, then=Value(0)),
    When(state=AlertState.ACKNOWLEDGED, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def alert_list(request):
    open_alerts = Alert.objects.filter(state__in=OPEN_STATES).annotate(order=STATE_ORDER)
    open_alerts = open_alerts.order_by("order", "-started_at")
    history = paginate(request, Alert.objects.filter(state=AlertState.RESOLVED))
    failed = Notification.objects.filter(status=NotificationStatus.FAILED).select_related("alert")[:20]
    context = {"open_alerts": open_alerts, "page": history, "failed": failed}
    return render(request, "alerts/list.html", context)


def alert_detail(request, pk):
    queryset = Alert.objects.select_related("rule", "deployment", "acknowledged_by", "resolved_by")
    alert = get_object_or_404(queryset, pk=pk)
    context = {
        "alert": alert,
        "cause": display_cause(alert),
        "figures": figure_rows(alert.values),
        "current": figure_rows(alert.last_values) if alert.last_values != alert.values else [],
        "threshold": format_threshold(alert),
        "log_tail": (alert.values or {}).get("log_tail", ""),
        "notifications": alert.notifications.prefetch_related("attempts").order_by("created_at", "id"),
    }
    return render(request, "alerts/detail.html", context)


def alert_chart(request, pk):
    alert = get_object_or_404(Alert, pk=pk)
    png = render_chart(alert.series, label=alert.series_label, threshold=alert.threshold, fired_at=alert.started_at)
    if png is None:
        raise Http404("This alert has no series to draw.")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=300"
    return response


def _alert_action(request, pk, change, done: str):
    alert = get_object_or_404(Alert, pk=pk)
    try:
        change(actor(request), alert, request.POST.get("comment", "")[:500])
    except Conflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return redirect(f"/alerts/{pk}/")


@require_POST
@role_required(Role.OPERATOR)
def alert_acknowledge(request, pk):
    return _alert_action(request, pk, service.acknowledge_alert, "Acknowledged: no more reminders.")


@require_POST
@role_required(Role.OPERATOR)
def alert_resolve(request, pk):
    return _alert_action(request, pk, service.resolve_alert, "Resolved; a resolve notice is on its way.")


@require_POST
@role_required(Role.OPERATOR)
def notification_retry(request, pk):
    notification = get_object_or_404(Notification, pk=pk)
    try:
        delivery.retry_notification(actor(request), notification)
    except Conflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Queued for one more try.")
    return redirect(f"/alerts/{notification.alert_id}/")


def rule_list(request):
    queryset = AlertRule.objects.select_related("deployment").annotate(
        open_alerts=Count("alerts", filter=Q(alerts__state__in=OPEN_STATES))
    )
    return render(request, "alerts/rules.html", {"rules": queryset, "kinds": _kind_docs()})


def rule_detail(request, pk):
    rule = get_object_or_404(AlertRule.objects.select_related("deployment", "created_by"), pk=pk)
    alerts = rule.alerts.annotate(order=STATE_ORDER).order_by("order", "-started_at")[:50]
    return render(request, "alerts/rule_detail.html", {"rule": rule, "alerts": alerts, "kinds": _kind_docs()})


def _kind_docs() -> list[dict]:
    """Each kind with its parameters, for the help shown beside the rule form."""
    return [
        {
            "kind": kind,
            "params": [
                {"name": p.name, "default": "required" if p.required else json.dumps(p.default), "doc": p.doc}
                for p in params
            ],
        }
        for kind, params in rules.KINDS.items()
    ]


class AlertRuleForm(forms.Form):
    """Create or change a rule. Parameters are JSON (their keys depend on the kind: see the table below the form)."""

    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=AlertRule._meta.get_field("kind").choices or ())
    deployment = forms.ModelChoiceField(
        queryset=Deployment.objects.all(), required=False, empty_label="All deployments"
    )
    parameters = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": '{"threshold_s": 2.0, "window_s": 300}'}),
        required=False,
        help_text="JSON; keys per kind below. Empty: the kind's defaults.",
    )
    severity = forms.ChoiceField(choices=AlertSeverity.choices, initial=AlertSeverity.WARNING)
    for_s = forms.IntegerField(initial=0, label="For (s)", help_text="The condition must hold this long first.")
    repeat_interval_s = forms.IntegerField(
        initial=4 * 3600, label="Repeat interval (s)", help_text="Re-notify while firing and unacknowledged; 0: never."
    )
    recipients = forms.CharField(
        required=False, help_text="E-mail addresses, separated by commas; empty: the on-call list (ONCALL_EMAILS)."
    )
    enabled = forms.BooleanField(required=False, initial=True)
    description = forms.CharField(max_length=500, required=False)

    def __init__(self, *args, rule: AlertRule | None = None, **kwargs):
        if rule is not None:
            kwargs["initial"] = {
                "name": rule.name,
                "kind": rule.kind,
                "deployment": rule.deployment,
                "parameters": json.dumps(rule.parameters),
                "severity": rule.severity,
                "for_s": rule.for_s,
                "repeat_interval_s": rule.repeat_interval_s,
                "recipients": ", ".join(rule.recipients),
                "enabled": rule.enabled,
                "description": rule.description,
            }
        super().__init__(*args, **kwargs)
        if rule is not None:
            self.fields["kind"].disabled = True

    def clean_parameters(self):
        raw = (self.cleaned_data.get("parameters") or "").strip()
        try:
            return json.loads(raw) if raw else {}
        except ValueError as exc:
            raise forms.ValidationError(f"is not valid JSON: {exc}") from None

    def clean_recipients(self):
        return [part for part in re.split(r"[,;\s]+", self.cleaned_data.get("recipients") or "") if part]


def _flat_parameter_errors(save):
    """Service errors on ``parameters.<key>`` shown on the parameters field with the key named."""

    def wrapped():
        try:
            return save()
        except InvalidInput as exc:
            errors = {}
            for path, message in flatten_errors(exc.errors):
                field, _, rest = path.partition(".")
                errors.setdefault(field, []).append(f"{rest}: {message}" if rest else message)
            raise InvalidInput(errors) from None

    return wrapped


@role_required(Role.OPERATOR)
def rule_form(request, pk=None):
    rule = get_object_or_404(AlertRule, pk=pk) if pk else None
    form = AlertRuleForm(request.POST or None, rule=rule)

    def save():
        data = dict(form.cleaned_data)
        if rule is None:
            return rules.create_rule(actor(request), **data)
        data.pop("kind")
        return rules.update_rule(actor(request), rule, **data)

    return form_page(
        request,
        form,
        title=f"Change rule {rule}" if rule else "New alert rule",
        save=_flat_parameter_errors(save),
        success=lambda r: f"/alerts/rules/{r.pk}/",
        template="alerts/rule_form.html",
        context={"kinds": _kind_docs()},
    )


@require_POST
@role_required(Role.ADMIN)
def rule_delete(request, pk):
    rule = get_object_or_404(AlertRule, pk=pk)
    rules.delete_rule(actor(request), rule)
    messages.success(request, f"Deleted rule {rule.name}; its alerts stay in the history.")
    return redirect("/alerts/rules/")
