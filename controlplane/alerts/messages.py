"""The content of alert e-mails: subject, text and HTML from ``templates/alerts/email/<event>*``, and the chart.

The templates get the figures already formatted, the threshold, the deployment, the likely cause with an absolute
link to the revision diff, and the dashboard link, so a reader on a phone can judge the alert without signing in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.timesince import timesince

from controlplane.choices import NotificationEvent
from controlplane.models import Alert

from . import kinds
from .charts import render_chart

__all__ = [
    "RenderedEmail",
    "display_cause",
    "figure_rows",
    "format_threshold",
    "format_value",
    "render_email",
    "render_subject",
]

HIDDEN_FIGURES = {"log_tail"}


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    chart_png: bytes | None
    chart_cid: str


def format_value(key: str, value) -> str:
    """A figure as a person reads it: shares as percentages, seconds with a unit, floats to 4 digits."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if key.endswith("rate") or key.endswith("share"):
        return f"{value:.2%}"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{text} s" if key.endswith("_s") else text


def figure_rows(values: dict) -> list[tuple[str, str]]:
    return [
        (key.removesuffix("_s").replace("_", " "), format_value(key, value))
        for key, value in (values or {}).items()
        if key not in HIDDEN_FIGURES and not isinstance(value, dict | list)
    ]


def format_threshold(alert: Alert) -> str | None:
    if alert.threshold is None:
        return None
    return kinds.format_threshold(alert.kind, alert.threshold)


def _absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def display_cause(alert: Alert) -> dict | None:
    """The stored cause with its times as datetimes and an absolute link to the diff."""
    if not alert.cause:
        return None
    cause = dict(alert.cause)
    cause["diff_url"] = _absolute(cause["diff_path"])
    cause["revision_at"] = parse_datetime(cause.get("revision_at") or "")
    if cause.get("last_event"):
        cause["last_event"] = {**cause["last_event"], "at": parse_datetime(cause["last_event"].get("at") or "")}
    return cause


def _context(alert: Alert, event: str, chart_cid: str | None, at: datetime | None) -> dict:
    cause = display_cause(alert)
    # The duration as of the event (a reminder sent late still says how long it had fired when it was due).
    end = (alert.resolved_at if event == NotificationEvent.RESOLVED else at) or timezone.now()
    return {
        "alert": alert,
        "event": event,
        "rule": alert.rule,
        "deployment": alert.deployment_name or "all deployments",
        "figures": figure_rows(alert.values),
        "current": figure_rows(alert.last_values) if event != NotificationEvent.FIRING else [],
        "threshold": format_threshold(alert),
        "log_tail": (alert.values or {}).get("log_tail", ""),
        "cause": cause,
        "duration": timesince(alert.started_at, end),
        "alert_url": _absolute(f"/alerts/{alert.pk}/"),
        "deployment_url": _absolute(f"/deployments/{alert.deployment_id}/") if alert.deployment_id else None,
        "rule_url": _absolute(f"/alerts/rules/{alert.rule_id}/") if alert.rule_id else None,
        "alerts_url": _absolute("/alerts/"),
        "chart_cid": chart_cid,
        "site_url": settings.SITE_URL,
    }


def render_subject(alert: Alert, event: str, at: datetime | None = None) -> str:
    """One line, at most 250 characters. ``at``: when the event happened (default: now)."""
    text = render_to_string(f"alerts/email/{event}_subject.txt", _context(alert, event, None, at))
    return re.sub(r"\s+", " ", text).strip()[:250]


def render_email(alert: Alert, event: str, at: datetime | None = None) -> RenderedEmail:
    png = render_chart(alert.series, label=alert.series_label, threshold=alert.threshold, fired_at=alert.started_at)
    cid = f"chart-{alert.pk}@alerts" if png else ""
    context = _context(alert, event, cid or None, at)
    return RenderedEmail(
        subject=render_subject(alert, event, at),
        text=render_to_string(f"alerts/email/{event}.txt", context).strip() + "\n",
        html=render_to_string(f"alerts/email/{event}.html", context),
        chart_png=png,
        chart_cid=cid,
    )
