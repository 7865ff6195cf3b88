"""Drift checks on deployments: quality (a golden set through the worker), latency (a change point in the
gateway's request latencies and times to first token), and the output distribution (lengths, recent window
against a reference window). The statistics are in ``controlplane.stats.drift``; this module gathers the data,
stores each check with its statistic, threshold, verdict and data, and tells the alerts.

Each check is one ``Check`` entry in ``CHECKS`` (its kind, function, which way its statistic fires, docs),
validated when registered; ``run_checks``, the drift page and the API read the registry. To add one: a value in
``choices.DriftKind`` (what a stored check records), a function ``(deployment, context) -> Outcome``, and one
``CHECKS.register(...)``.

Baselines: the golden set's recorded outputs were produced by its model version as shipped, so their agreement
baseline is 1; the perplexity baseline is the first measurement on a deployment that serves the model as shipped
(precision as stored, router weights neutral), kept on the golden set.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.utils import timezone

from controlplane.alerts import service as alerts
from controlplane.alerts.evaluators import json_safe
from controlplane.choices import AlertKind, DeploymentStatus, DesiredState, DriftKind, DriftVerdict
from controlplane.extensions import Registry
from controlplane.models import Deployment, DriftCheck, InferenceRecord, ModelVersion
from controlplane.services.golden import golden_for
from controlplane.stats import drift as stats
from controlplane.workers.client import WorkerClient, WorkerError

logger = logging.getLogger(__name__)

__all__ = ["CHECKS", "Check", "Context", "closeness", "run_checks", "run_scheduled_checks"]

# What a check function returns: verdict and reason, and where it has them, statistic, threshold and data.
Outcome = dict[str, Any]


@dataclass(frozen=True)
class Context:
    """What a check is given besides the deployment: the moment it looks back from, and a client of the
    deployment's worker (only for checks that ask the worker, ``needs_worker``)."""

    now: datetime
    client: WorkerClient | None = None


@dataclass(frozen=True)
class Check:
    """One kind of drift check. ``fires`` says which way its statistic crosses the threshold: ``above`` (a drop
    or a change score) or ``below`` (a p-value under alpha); the drift page charts every check as its distance to
    firing from it. A check that ``needs_worker`` is inconclusive while no worker serves the deployment."""

    name: str
    function: Callable[[Deployment, Context], Outcome]
    fires: Literal["above", "below"]
    doc: str
    needs_worker: bool = False

    @property
    def label(self) -> str:
        """As stored checks show it (``choices.DriftKind``)."""
        return str(DriftKind(self.name).label)


def _check_entry(entry: Check) -> None:
    if entry.name not in DriftKind.values:
        raise ValueError(f"stored checks record their kind in choices.DriftKind; add {entry.name!r} there")
    if not callable(entry.function):
        raise ValueError(f"function {entry.function!r} is not callable")
    if entry.fires not in ("above", "below"):
        raise ValueError(f"fires={entry.fires!r}: say whether the statistic fires above or below its threshold")
    if not entry.doc:
        raise ValueError("give a one-line doc")


CHECKS = Registry[Check]("drift check", check=_check_entry)


def _as_shipped(deployment: Deployment, version: ModelVersion) -> bool:
    config = deployment.config
    weights = config.get("router_weights")
    neutral = weights is None or all(abs(w - 1.0) < 1e-9 for w in weights)
    return neutral and config.get("precision") == version.precision


def check_quality(deployment: Deployment, context: Context) -> Outcome:
    client = context.client
    assert client is not None  # needs_worker: _run_one gives such checks a client
    version, revision = deployment.model_version, deployment.current_revision
    assert version is not None and revision is not None  # deployments are created with their first revision
    golden = golden_for(version)
    if golden is None:
        return {"verdict": DriftVerdict.INCONCLUSIVE, "reason": f"{version} has no golden set; upload one"}
    perplexity = float(client.perplexity(golden.texts())["perplexity"])
    outputs, references = [], []
    for item in golden.items:
        answer = client.complete(
            deployment.name, item["prompt"], max_tokens=item.get("max_tokens", 32), temperature=0.0
        )
        outputs.append(answer["choices"][0]["text"])
        references.append(item.get("output") or item["reference"])
    recorded = all(item.get("output") for item in golden.items)
    baseline = dict(golden.baseline or {})
    if _as_shipped(deployment, version) and "perplexity" not in baseline:
        baseline["perplexity"] = perplexity
        if not recorded:
            scores = [stats.agreement(list(o), list(r)) for o, r in zip(outputs, references, strict=True)]
            baseline["agreement"] = sum(scores) / len(scores)
        golden.baseline = {**baseline, "measured_on": deployment.name, "revision": revision.number}
        golden.save(update_fields=["baseline"])
    config = stats.QualityConfig(min_items=settings.DRIFT_MIN_GOLDEN_ITEMS)
    result = stats.quality_check(
        [list(o) for o in outputs],
        [list(r) for r in references],
        baseline_agreement=1.0 if recorded else baseline.get("agreement", 1.0),
        perplexity=perplexity,
        baseline_perplexity=baseline.get("perplexity"),
        config=config,
    )
    data = result.as_dict() if hasattr(result, "as_dict") else dict(result.__dict__)
    data.update(outputs=outputs, golden_set=golden.pk, items=len(golden.items))
    statistic = result.agreement_drop if result.agreement_drop is not None else None
    return {
        "verdict": result.verdict,
        "reason": result.reason,
        "statistic": statistic,
        "threshold": config.max_agreement_drop,
        "data": data,
    }


def _windows(deployment: Deployment, now: datetime) -> tuple[list[InferenceRecord], list[InferenceRecord]]:
    """Served, uncached requests: the reference window before the recent window, and the recent window."""
    recent_start = now - timedelta(seconds=settings.DRIFT_RECENT_WINDOW_S)
    reference_start = recent_start - timedelta(seconds=settings.DRIFT_REFERENCE_WINDOW_S)
    rows = list(
        InferenceRecord.objects.filter(
            deployment=deployment, at__gte=reference_start, at__lt=now, cached=False, status_code__lt=400
        ).order_by("at")
    )
    return [r for r in rows if r.at < recent_start], [r for r in rows if r.at >= recent_start]


def check_latency(deployment: Deployment, context: Context) -> Outcome:
    reference, recent = _windows(deployment, context.now)
    config = stats.ChangePointConfig(family_size=2)
    results = {}
    for field in ("latency_s", "ttft_s"):
        base = [getattr(r, field) for r in reference if getattr(r, field)]
        series = [getattr(r, field) for r in recent if getattr(r, field)]
        if len(base) < config.min_baseline or not series:
            continue
        results[field] = stats.detect(base, series, config)
    if not results:
        return {
            "verdict": DriftVerdict.INCONCLUSIVE,
            "reason": f"not enough requests: {len(reference)} in the "
            f"reference window (need {config.min_baseline}), {len(recent)} recent",
            "data": {"reference": len(reference), "recent": len(recent)},
        }
    worst = max(results.values(), key=lambda r: r.statistic / max(r.threshold, 1e-9))
    drifted = [name for name, r in results.items() if r.verdict == stats.Verdict.DRIFT]
    verdict = DriftVerdict.DRIFT if drifted else DriftVerdict.OK
    reason = "; ".join(f"{name}: {r.reason}" for name, r in results.items())
    return {
        "verdict": verdict,
        "reason": reason,
        "statistic": worst.statistic,
        "threshold": worst.threshold,
        "data": {name: r.as_dict() for name, r in results.items()},
    }


def check_distribution(deployment: Deployment, context: Context) -> Outcome:
    reference, recent = _windows(deployment, context.now)
    ref = {"length": [r.completion_tokens for r in reference if r.completion_tokens]}
    cur = {"length": [r.completion_tokens for r in recent if r.completion_tokens]}
    result = stats.compare_outputs(ref, cur, stats.DistributionConfig())
    data = result.as_dict()
    p_values = [t.get("p_value") for t in data.get("tests", []) if t.get("p_value") is not None]
    return {
        "verdict": result.verdict,
        "reason": result.reason,
        "statistic": min(p_values) if p_values else None,
        "threshold": result.alpha,
        "data": data,
    }


CHECKS.register(
    Check(
        DriftKind.QUALITY,
        check_quality,
        "above",
        "The model version's golden set through the worker: agreement with the recorded outputs, and perplexity, "
        "against the baseline.",
        needs_worker=True,
    )
)
CHECKS.register(
    Check(
        DriftKind.LATENCY,
        check_latency,
        "above",
        "A change point in the gateway's request latencies and times to first token (recent window against the "
        "reference window before it).",
    )
)
CHECKS.register(
    Check(
        DriftKind.DISTRIBUTION,
        check_distribution,
        "below",
        "Output lengths of the recent window against the reference window before it (a p-value under alpha).",
    )
)


def closeness(check: DriftCheck) -> float | None:
    """A stored check's statistic as a share of its threshold, oriented by its kind: 1 is where the check fires.
    None when it has no figures, or its kind is no longer registered."""
    entry = CHECKS.get(check.kind)
    if entry is None or check.statistic is None or check.threshold in (None, 0):
        return None
    if entry.fires == "below":
        return round(check.threshold / max(check.statistic, 1e-12), 4)
    return round(check.statistic / check.threshold, 4)


def run_checks(
    deployment: Deployment,
    kinds: list[str] | None = None,
    *,
    trigger: str = "scheduled",
    now: datetime | None = None,
    client: WorkerClient | None = None,
) -> list[DriftCheck]:
    """Run the checks of ``kinds`` (default: every registered one) on ``deployment``, store them, and signal the
    alerts. A worker client is made only when a check needs one and none was given, and closed at the end."""
    now = now or timezone.now()
    entries = [CHECKS[kind] for kind in kinds] if kinds else list(CHECKS)
    own_client = None
    if client is None and deployment.worker_url and any(entry.needs_worker for entry in entries):
        client = own_client = WorkerClient.for_deployment(deployment.pk, deployment.worker_url)
    try:
        return [_run_and_store(deployment, entry, Context(now, client), trigger) for entry in entries]
    finally:
        if own_client is not None:
            own_client.close()


def _run_and_store(deployment: Deployment, entry: Check, context: Context, trigger: str) -> DriftCheck:
    started = time.perf_counter()
    try:
        outcome = _run_one(deployment, entry, context)
    except WorkerError as exc:
        outcome = {"verdict": DriftVerdict.ERROR, "reason": f"the worker could not be asked: {exc.message}"}
    except Exception as exc:
        logger.exception("drift check %s on %s failed", entry.name, deployment.name)
        outcome = {"verdict": DriftVerdict.ERROR, "reason": f"{type(exc).__name__}: {exc}"}
    revision = deployment.current_revision
    assert revision is not None  # deployments are created with their first revision
    check = DriftCheck.objects.create(
        deployment=deployment,
        kind=entry.name,
        verdict=str(outcome["verdict"]),
        statistic=outcome.get("statistic"),
        threshold=outcome.get("threshold"),
        reason=outcome.get("reason", "")[:5000],
        data=json.loads(json.dumps(json_safe(outcome.get("data", {})), default=str)),
        revision=revision.number,
        model_version=deployment.model_version,
        trigger=trigger,
        started_at=context.now,
        duration_s=time.perf_counter() - started,
    )
    _signal(check, entry)
    return check


def _run_one(deployment: Deployment, entry: Check, context: Context) -> Outcome:
    if entry.needs_worker and context.client is None:
        return {"verdict": DriftVerdict.INCONCLUSIVE, "reason": "no worker is serving this deployment"}
    return entry.function(deployment, context)


def _signal(check: DriftCheck, entry: Check) -> None:
    """A drift verdict fires the deployment's drift alert for this kind; an ok verdict clears it."""
    if check.verdict not in (DriftVerdict.DRIFT, DriftVerdict.OK):
        return
    firing = check.verdict == DriftVerdict.DRIFT
    values = {"statistic": check.statistic, "threshold": check.threshold, "revision": check.revision}
    series = [
        (c.started_at, c.statistic)
        for c in reversed(
            list(DriftCheck.objects.filter(deployment=check.deployment, kind=check.kind, statistic__isnull=False)[:48])
        )
    ]
    try:
        alerts.signal(
            AlertKind.DRIFT,
            check.deployment,
            check.kind,
            firing,
            title=f"{entry.label} drift on {check.deployment.name}",
            summary=check.reason,
            values=values,
            series=series or None,
        )
    except Exception:
        logger.exception("could not signal the drift alert of %s", check)


def run_scheduled_checks(now: datetime | None = None) -> dict:
    """The scheduled job: every running deployment, every kind."""
    deployments = Deployment.objects.filter(desired_state=DesiredState.RUNNING, status=DeploymentStatus.RUNNING)
    verdicts: dict[str, int] = {}
    for deployment in deployments.select_related("current_revision__model_version"):
        for check in run_checks(deployment, now=now):
            verdicts[check.verdict] = verdicts.get(check.verdict, 0) + 1
    return {"deployments": deployments.count(), "drifted": verdicts.get(DriftVerdict.DRIFT, 0), **verdicts}
