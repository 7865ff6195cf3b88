"""Alert kinds evaluated from stored rows: request latency and errors from ``InferenceRecord``, restarts from
``WorkerEvent``. Each is one ``Evaluator`` entry in ``EVALUATORS`` (its kind, label, unit, function, the rule
parameters it takes with their bounds, and docs), validated when registered. Its function looks at one rule and one
deployment at a moment ``now`` and returns an ``Observation``: whether the condition holds, the figures, and
(lazily) a series for the e-mail's chart. ``evaluate_alert_rules`` runs every enabled rule of a registered kind.

To add one: a value in ``choices.AlertKind`` (what rules store), a function, and one ``EVALUATORS.register(...)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
from django.db.models import Count, Q

from controlplane.choices import AlertKind, AlertSeverity, DesiredState, WorkerEventKind
from controlplane.extensions import Registry
from controlplane.models import AlertRule, Deployment, InferenceRecord, WorkerEvent

from .params import REQUIRED, Param, check_params

__all__ = ["EVALUATORS", "Evaluator", "Observation", "check_kind", "failed_request_q", "json_safe"]

Series = Sequence[tuple[datetime | str | int, float | None]]
"""Chart points: (time, ISO time or sample number; value, None for no value)."""
CHART_WINDOWS = 4  # the chart shows this many evaluation windows up to the moment it fired
CHART_BUCKETS = 24


@dataclass
class Observation:
    """What an evaluator or a signal saw: ``firing`` says whether the condition holds now."""

    deployment: Deployment | None
    key: str
    firing: bool
    title: str
    summary: str = ""
    values: dict = field(default_factory=dict)
    threshold: float | None = None
    series: Series | Callable[[], Series] | None = None
    series_label: str = ""

    def __post_init__(self):
        self.values = json_safe(self.values or {})

    def resolved_series(self) -> Series:
        """The chart series, computed now when it was given as a function (only alerts that fire need one); points
        without a finite value are left out."""
        series = self.series() if callable(self.series) else self.series
        points = [(json_safe(at), json_safe(value)) for at, value in (series or [])]
        return [(at, value) for at, value in points if isinstance(value, float | int) and not isinstance(value, bool)]


def json_safe(value):
    """``value`` as JSON that PostgreSQL accepts too: numpy numbers and arrays as plain ones, NaN and infinities as
    null, times as ISO strings, anything else unknown as its text."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return json_safe(value.tolist())
    return str(value)


def failed_request_q() -> Q:
    """A failed request: a server error, or an error recorded on a request that had already answered 2xx/3xx (a
    stream that broke after its headers went out). 4xx refusals are the client's and do not count."""
    return Q(status_code__gte=500) | (Q(status_code__lt=400) & ~Q(error=""))


def _is_failed(status_code: int, error: str) -> bool:
    """``failed_request_q`` for one row."""
    return status_code >= 500 or (status_code < 400 and bool(error))


def _buckets(rows: list[tuple[datetime, float]], start: datetime, end: datetime, reduce) -> Series:
    """Rows grouped into equal time buckets between ``start`` and ``end``, each reduced to one value."""
    width = (end - start) / CHART_BUCKETS
    groups: list[list[float]] = [[] for _ in range(CHART_BUCKETS)]
    for at, value in rows:
        index = min(int((at - start) / width), CHART_BUCKETS - 1) if width.total_seconds() > 0 else 0
        if index >= 0:
            groups[index].append(value)
    return [(start + width * (i + 1), reduce(g)) for i, g in enumerate(groups) if g]


def _requests(deployment: Deployment, start: datetime, end: datetime):
    return InferenceRecord.objects.filter(deployment=deployment, at__gt=start, at__lte=end)


def evaluate_latency(rule: AlertRule, deployment: Deployment, now: datetime) -> Observation:
    """The chosen percentile of latency (or time to first token) over the window, cached answers left out."""
    p = rule.parameters
    metric, q, window = p["metric"], p["percentile"], timedelta(seconds=p["window_s"])
    queryset = _requests(deployment, now - window, now).filter(cached=False, **{f"{metric}__isnull": False})
    samples = list(queryset.values_list(metric, flat=True))
    observed = float(np.percentile(samples, q)) if samples else None
    firing = observed is not None and len(samples) >= p["min_requests"] and observed > p["threshold_s"]
    what = "latency" if metric == "latency_s" else "time to first token"
    shown = "no requests" if observed is None else f"{observed:.3g} s"
    start = now - window * CHART_WINDOWS

    def series() -> Series:
        rows = _requests(deployment, start, now).filter(cached=False, **{f"{metric}__isnull": False})
        return _buckets(list(rows.values_list("at", metric)), start, now, lambda g: float(np.percentile(g, q)))

    return Observation(
        deployment=deployment,
        key="",
        firing=firing,
        title=f"p{q:g} {what} {shown} (threshold {p['threshold_s']:g} s) on {deployment.name}",
        summary=f"{len(samples)} requests in the last {p['window_s']} s; rules fire from {p['min_requests']}.",
        values={f"p{q:g}_{metric}": observed, "requests": len(samples), "window_s": p["window_s"]},
        threshold=p["threshold_s"],
        series=series,
        series_label=f"p{q:g} {what} (s)",
    )


def evaluate_error_rate(rule: AlertRule, deployment: Deployment, now: datetime) -> Observation:
    """The share of failed requests (see ``failed_request_q``) over the window."""
    p = rule.parameters
    window = timedelta(seconds=p["window_s"])
    counts = _requests(deployment, now - window, now).aggregate(
        total=Count("id"), failed=Count("id", filter=failed_request_q())
    )
    total, failed = counts["total"], counts["failed"]
    rate = failed / total if total else None
    firing = rate is not None and total >= p["min_requests"] and rate > p["threshold"]
    shown = "no requests" if rate is None else f"{rate:.1%}"
    start = now - window * CHART_WINDOWS

    def series() -> Series:
        rows = _requests(deployment, start, now).values_list("at", "status_code", "error")
        marked = [(at, 1.0 if _is_failed(status, error) else 0.0) for at, status, error in rows]
        return _buckets(marked, start, now, lambda g: sum(g) / len(g))

    return Observation(
        deployment=deployment,
        key="",
        firing=firing,
        title=f"error rate {shown} (threshold {p['threshold']:.1%}) on {deployment.name}",
        summary=f"{failed} of {total} requests failed in the last {p['window_s']} s; "
        f"rules fire from {p['min_requests']} requests.",
        values={"error_rate": rate, "failed": failed, "requests": total, "window_s": p["window_s"]},
        threshold=p["threshold"],
        series=series,
        series_label="share of failed requests",
    )


RESTART_KINDS = (WorkerEventKind.RESTARTED, WorkerEventKind.EXITED)


def evaluate_worker_restart(rule: AlertRule, deployment: Deployment, now: datetime) -> Observation:
    """Restarts and unexpected exits of the deployment's worker within the window."""
    p = rule.parameters
    events = WorkerEvent.objects.filter(
        deployment=deployment, kind__in=RESTART_KINDS, at__gt=now - timedelta(seconds=p["window_s"]), at__lte=now
    )
    count = events.count()
    latest = events.order_by("-at", "-id").first()
    values = {"restarts_and_exits": count, "window_s": p["window_s"], "min_count": p["min_count"]}
    summary = f"{count} restarts or exits in the last {p['window_s']} s."
    if latest is not None:
        values.update(last_event=latest.kind, last_message=latest.message, exit_code=latest.exit_code)
        summary += f" Latest: {latest.get_kind_display().lower()} at {latest.at:%Y-%m-%d %H:%M:%S}: {latest.message}"
        if latest.log_tail:
            values["log_tail"] = latest.log_tail[-2000:]
    return Observation(
        deployment=deployment,
        key="",
        firing=count >= p["min_count"],
        title=f"worker of {deployment.name} restarted or exited {count} times in {p['window_s'] // 60} min",
        summary=summary,
        values=values,
        threshold=p["min_count"],
    )


def evaluate_node_unattended(rule: AlertRule, deployment: Deployment, now: datetime) -> Observation:
    """A deployment that should run on a node whose control plane stopped stamping its heartbeat (``last_seen``):
    nothing starts, watches or restarts its worker. A node never seen is not counted (no heartbeat to miss)."""
    max_age = rule.parameters["max_age_s"]
    node = deployment.node
    age = None if node.last_seen is None else (now - node.last_seen).total_seconds()
    firing = deployment.desired_state == DesiredState.RUNNING and age is not None and age > max_age
    seen = "never seen" if node.last_seen is None else f"last seen {age:.0f} s ago ({node.last_seen:%Y-%m-%d %H:%M:%S})"
    return Observation(
        deployment=deployment,
        key="",
        firing=firing,
        title=f"node {node.hostname} of {deployment.name} has no control plane running: {seen}",
        summary=f"The control plane on each node stamps a heartbeat every few seconds; rules fire after {max_age} s "
        "without one while a deployment should run there. Start `manage.py serve` on that node, or move the "
        "deployment to a node that has one.",
        values={"node": node.hostname, "heartbeat_age_s": age, "max_age_s": max_age},
        threshold=max_age,
    )


Evaluate = Callable[[AlertRule, Deployment, datetime], Observation]


@dataclass(frozen=True)
class Evaluator:
    """An alert kind evaluated from stored rows on every deployment its rules cover.

    ``unit`` is the threshold's: ``s`` (seconds), ``share`` (0 to 1, shown as a percentage), or what is counted
    (``restarts or exits``). ``default_severity``: a ``default-<kind>`` rule is created on first use (only for
    kinds that need no threshold); disable it to silence the kind."""

    name: str
    unit: str
    function: Evaluate
    params: tuple[Param, ...]
    doc: str
    default_severity: str | None = None

    @property
    def label(self) -> str:
        """As rules and alerts show their kind (``choices.AlertKind``)."""
        return str(AlertKind(self.name).label)


def check_kind(entry) -> None:
    """What every alert kind's entry must satisfy (evaluated or signalled): a database value, a doc,
    sound parameters, and a default rule only where every parameter has a default."""
    if entry.name not in AlertKind.values:
        raise ValueError(f"rules store their kind in choices.AlertKind; add {entry.name!r} there")
    if not entry.doc:
        raise ValueError("give a one-line doc")
    check_params(entry.params)
    if entry.default_severity is not None:
        if entry.default_severity not in AlertSeverity.values:
            raise ValueError(f"default_severity {entry.default_severity!r} is not one of {AlertSeverity.values}")
        if any(param.required for param in entry.params):
            raise ValueError("a kind with a required parameter cannot have a default rule")


def _check_evaluator(entry: Evaluator) -> None:
    check_kind(entry)
    if not callable(entry.function):
        raise ValueError(f"function {entry.function!r} is not callable")
    if not entry.unit:
        raise ValueError("give the threshold's unit: s, share, or what is counted")


EVALUATORS = Registry[Evaluator]("alert evaluator", check=_check_evaluator)

WINDOW = Param("window_s", int, 300, "Seconds of requests looked at on each evaluation.", 10, 86_400)

EVALUATORS.register(
    Evaluator(
        AlertKind.LATENCY,
        "s",
        evaluate_latency,
        (
            Param(
                "threshold_s",
                float,
                REQUIRED,
                "Fires when the percentile is above this many seconds.",
                0,
                3600,
                exclusive_minimum=True,
            ),
            WINDOW,
            Param("percentile", float, 95.0, "Which percentile of the window (50 to 100).", 50, 100),
            Param("metric", str, "latency_s", "Whole request or time to first token.", choices=("latency_s", "ttft_s")),
            Param("min_requests", int, 10, "Fewer requests in the window than this never fire.", 1, 1_000_000),
        ),
        "A percentile of request latency (or time to first token) over a window, cached answers left out.",
    )
)
EVALUATORS.register(
    Evaluator(
        AlertKind.ERROR_RATE,
        "share",
        evaluate_error_rate,
        (
            Param(
                "threshold", float, REQUIRED, "Fires when the share of failed requests is above this (0 to 1).", 0, 1
            ),
            WINDOW,
            Param("min_requests", int, 20, "Fewer requests in the window than this never fire.", 1, 1_000_000),
        ),
        "The share of failed requests (server errors, streams broken after their headers) over a window.",
    )
)
EVALUATORS.register(
    Evaluator(
        AlertKind.WORKER_RESTART,
        "restarts or exits",
        evaluate_worker_restart,
        (
            Param("window_s", int, 900, "Seconds of worker events looked at.", 60, 7 * 86_400),
            Param("min_count", int, 1, "Restarts and exits in the window that fire.", 1, 1000),
        ),
        "Restarts and unexpected exits of a deployment's worker within a window.",
        default_severity=AlertSeverity.WARNING,
    )
)
EVALUATORS.register(
    Evaluator(
        AlertKind.NODE_UNATTENDED,
        "s",
        evaluate_node_unattended,
        (Param("max_age_s", int, 90, "Fires when the node's last heartbeat is older than this.", 15, 86_400),),
        "A deployment that should run on a node whose control plane stopped (no heartbeat): nothing supervises it.",
        default_severity=AlertSeverity.CRITICAL,
    )
)
