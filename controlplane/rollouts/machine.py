"""The rollout state machine.

    pending ──canary healthy──▶ running ──all steps pass──▶ promoted
       │                        │  ▲  │
       │                  pause │  │ resume        a gate fails / operator ──▶ rolled back
       │                        ▼  │  │                       operator      ──▶ aborted
       └──canary never healthy──▶ failed      paused ─────────────────────────┘

Every transition is one conditional UPDATE on the current status (``Q(pk=…, status__in=allowed)``): a concurrent
call that loses gets 409, and no interleaving leaves two stable versions or a lost rollout. ``advance`` is the
only code that moves a rollout on by itself; the scheduler calls it every few seconds and tests call it with a
controllable clock. Everything is in the database, so a restarted control plane resumes where it was.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.alerts import service as alerts
from controlplane.choices import AlertKind, DesiredState, RolloutStatus, RolloutStrategy
from controlplane.models import Deployment, ModelVersion, Rollout, RolloutEvent
from controlplane.rollouts import gates as gate_checks
from controlplane.services import audit
from controlplane.services.deployment_config import validate_config
from controlplane.services.deployments import commit_revision, deployment_changed
from controlplane.services.errors import Conflict, InvalidInput
from controlplane.services.fit import check_fit, estimate_memory, format_bytes
from controlplane.services.golden import golden_texts_for
from controlplane.workers.client import WorkerClient

logger = logging.getLogger(__name__)

__all__ = ["abort", "advance", "canary_ready", "create_rollout", "pause", "promote", "resume", "rollback"]

ACTIVE = RolloutStatus.active()
DEFAULT_STEPS = {RolloutStrategy.CANARY: [10, 50, 100], RolloutStrategy.BLUE_GREEN: [0]}


def log(rollout: Rollout, kind: str, message: str, **data) -> RolloutEvent:
    logger.info("rollout %s: %s", rollout.pk, message)
    return RolloutEvent.objects.create(rollout=rollout, kind=kind, message=message[:500], data=data)


def _notify(rollout: Rollout) -> None:
    deployment = rollout.deployment
    transaction.on_commit(lambda: deployment_changed.send(sender=Rollout, deployment=deployment, revision=None))


# --- creating ----------------------------------------------------------------------------------------------------
def _check_steps(strategy: str, steps) -> list[int]:
    if strategy == RolloutStrategy.BLUE_GREEN:
        if steps not in (None, [0]):
            raise InvalidInput.field(
                "steps",
                "blue-green has no traffic steps: the new version warms up at 0% and "
                "takes all traffic at once when its checks pass",
            )
        return [0]
    if steps is None:
        return list(DEFAULT_STEPS[RolloutStrategy.CANARY])
    if not isinstance(steps, list) or not steps or len(steps) > 20:
        raise InvalidInput.field("steps", "must be a list of 1 to 20 traffic shares in percent, e.g. [10, 50, 100]")
    if any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 100 for s in steps):
        raise InvalidInput.field("steps", "each step must be a whole percentage from 1 to 100")
    if any(b <= a for a, b in pairwise(steps)) or steps[-1] != 100:
        raise InvalidInput.field("steps", f"must rise strictly and end at 100; got {steps}")
    return steps


def _check_capacity(deployment: Deployment, model_version: ModelVersion, config: dict) -> None:
    """The canary runs beside the stable version: both must fit together, headroom kept."""
    current = deployment.current_revision
    assert current is not None  # deployments are created with their first revision
    gpus = list(deployment.gpus.all())
    stable = estimate_memory(current.model_version, current.config, on_gpu=bool(gpus))
    try:
        check_fit(model_version, config, deployment.node, gpus, exclude=deployment, extra_claims=stable.total_bytes)
    except InvalidInput as exc:
        message = cast("list[str]", exc.errors["fit"])[0]  # check_fit's message
        raise InvalidInput(
            {
                "fit": [
                    f"The canary must run beside the stable version ({format_bytes(stable.total_bytes)}). {message} "
                    "Free memory, lower max_batch_size or precision, or change the deployment directly (PATCH "
                    "/api/v1/deployments/{id}/, a rolling swap without a canary)."
                ]
            }
        ) from None


def create_rollout(
    actor: audit.Actor,
    deployment: Deployment,
    *,
    model_version: ModelVersion | None = None,
    config: dict | None = None,
    strategy: str = RolloutStrategy.CANARY,
    steps: list[int] | None = None,
    bake_s: int = 300,
    gates: dict | None = None,
    comment: str = "",
) -> Rollout:
    if deployment.desired_state != DesiredState.RUNNING:
        raise Conflict(f"{deployment.name} is stopped; start it before rolling out to it")
    if Rollout.objects.filter(deployment=deployment, status__in=ACTIVE).exists():
        raise Conflict(f"{deployment.name} already has an active rollout; finish, roll back or abort it first")
    current = deployment.current_revision
    assert current is not None  # deployments are created with their first revision
    target_version = model_version or current.model_version
    target_config = validate_config(config or {}, target_version, base=current.config)
    if target_version.pk == current.model_version_id and target_config == current.config:
        raise InvalidInput.field("model_version", "nothing to roll out: the target is what the deployment serves")
    steps = _check_steps(strategy, steps)
    if isinstance(bake_s, bool) or not isinstance(bake_s, int) or not 0 <= bake_s <= 7 * 86400:
        raise InvalidInput.field("bake_s", "must be whole seconds from 0 to 604800")
    try:
        checked_gates = gate_checks.validate_gates(gates)
    except ValueError as exc:
        raise InvalidInput({"gates": [str(exc)]}) from None
    _check_capacity(deployment, target_version, target_config)
    try:
        with transaction.atomic():
            rollout = Rollout.objects.create(
                deployment=deployment,
                strategy=strategy,
                base_revision=current,
                target_model_version=target_version,
                target_config=target_config,
                steps=steps,
                bake_s=bake_s,
                gates=checked_gates,
                comment=comment,
                created_by=actor.user,
            )
            log(
                rollout,
                "action",
                f"created by {actor.name}: {strategy} to {target_version}, steps {steps}, bake {bake_s} s",
                target_config=target_config,
            )
            audit.record(actor, "rollout.create", rollout, after=audit.snapshot(rollout))
            _notify(rollout)
    except IntegrityError:
        raise Conflict(f"{deployment.name} already has an active rollout") from None
    return rollout


# --- transitions -------------------------------------------------------------------------------------------------
def _transition(rollout: Rollout, allowed: tuple[str, ...], to: str, verb: str, **fields) -> Rollout:
    """Move ``rollout`` to ``to`` if it is still in one of ``allowed``; otherwise 409 naming its state."""
    if to not in ACTIVE:
        fields.setdefault("finished_at", timezone.now())
    updated = Rollout.objects.filter(pk=rollout.pk, status__in=allowed).update(status=to, **fields)
    if updated != 1:
        current = Rollout.objects.filter(pk=rollout.pk).values_list("status", flat=True).first()
        raise Conflict(f"cannot {verb} rollout {rollout.pk}: it is {current}")
    rollout.refresh_from_db()
    return rollout


def pause(actor: audit.Actor, rollout: Rollout) -> Rollout:
    with transaction.atomic():
        before = audit.snapshot(rollout)
        rollout = _transition(rollout, (RolloutStatus.PENDING, RolloutStatus.RUNNING), RolloutStatus.PAUSED, "pause")
        log(rollout, "action", f"paused by {actor.name} at step {rollout.current_step + 1}")
        audit.record(actor, "rollout.pause", rollout, before=before, after=audit.snapshot(rollout))
    return rollout


def resume(actor: audit.Actor, rollout: Rollout, now: datetime | None = None) -> Rollout:
    """Resume; the current step's bake time starts again, so the gates see a full window."""
    now = now or timezone.now()
    with transaction.atomic():
        before = audit.snapshot(rollout)
        to = RolloutStatus.RUNNING if rollout.canary_ready_at else RolloutStatus.PENDING
        rollout = _transition(rollout, (RolloutStatus.PAUSED,), to, "resume", step_started_at=now)
        log(rollout, "action", f"resumed by {actor.name} at step {rollout.current_step + 1}")
        audit.record(actor, "rollout.resume", rollout, before=before, after=audit.snapshot(rollout))
    return rollout


def promote(actor: audit.Actor, rollout: Rollout, reason: str = "") -> Rollout:
    """Make the candidate the deployment's new revision; the supervisor hands the canary's worker the stable role
    and retires the old one after in-flight requests finish."""
    with transaction.atomic():
        before = audit.snapshot(rollout)
        rollout = _transition(
            rollout, ACTIVE, RolloutStatus.PROMOTED, "promote", reason=reason or f"promoted by {actor.name}"
        )
        deployment = Deployment.objects.select_for_update().get(pk=rollout.deployment_id)
        revision = commit_revision(
            actor,
            deployment,
            rollout.target_model_version,
            rollout.target_config,
            comment=f"rollout {rollout.pk} promoted",
        )
        Rollout.objects.filter(pk=rollout.pk).update(result_revision=revision)
        rollout.result_revision = revision
        log(rollout, "decision", f"promoted: {rollout.reason}; now revision {revision.number}")
        audit.record(actor, "rollout.promote", rollout, before=before, after=audit.snapshot(rollout))
        _notify(rollout)
    return rollout


def rollback(
    actor: audit.Actor,
    rollout: Rollout,
    reason: str = "",
    *,
    gate: str = "",
    figures: dict | None = None,
    status: str = RolloutStatus.ROLLED_BACK,
) -> Rollout:
    """Traffic back to stable, the canary stopped and its memory freed, the reason kept; an alert goes out."""
    verb = "abort" if status == RolloutStatus.ABORTED else "roll back"
    with transaction.atomic():
        before = audit.snapshot(rollout)
        fields: dict[str, Any] = {"reason": reason or f"{verb} by {actor.name}", "failed_gate": gate}
        if figures is not None:
            fields["figures"] = figures
        rollout = _transition(rollout, ACTIVE, status, verb, **fields)
        log(
            rollout,
            "decision",
            f"{rollout.get_status_display().lower()}: {rollout.reason}",
            gate=gate,
            figures=figures or {},
        )
        audit.record(
            actor,
            f"rollout.{'abort' if status == RolloutStatus.ABORTED else 'rollback'}",
            rollout,
            before=before,
            after=audit.snapshot(rollout),
        )
        _notify(rollout)
        transaction.on_commit(lambda: _alert(rollout), robust=True)
    return rollout


def abort(actor: audit.Actor, rollout: Rollout) -> Rollout:
    return rollback(actor, rollout, f"aborted by {actor.name}", status=RolloutStatus.ABORTED)


def _alert(rollout: Rollout) -> None:
    """Tell on-call people; the e-mail goes out with the next delivery round."""
    figures = rollout.figures or {}
    alerts.signal(
        AlertKind.ROLLOUT,
        rollout.deployment,
        f"rollout-{rollout.pk}",
        True,
        title=f"Rollout of {rollout.target_model_version} to {rollout.deployment.name} "
        f"{rollout.get_status_display().lower()}",
        summary=rollout.reason,
        values=figures,
    )


# --- the supervisor's reports ------------------------------------------------------------------------------------
def canary_ready(rollout: Rollout, url: str, pid: int | None) -> None:
    Rollout.objects.filter(pk=rollout.pk).update(
        canary_url=url, canary_pid=pid, canary_ready_at=timezone.now(), canary_lost_at=None
    )
    log(rollout, "worker", f"canary worker healthy at {url} (pid {pid})")


def canary_gone(rollout: Rollout, reason: str) -> None:
    Rollout.objects.filter(pk=rollout.pk).update(canary_url="", canary_pid=None)
    Rollout.objects.filter(pk=rollout.pk, canary_lost_at__isnull=True).update(canary_lost_at=timezone.now())
    log(rollout, "worker", f"canary worker down: {reason}")


# --- moving on ---------------------------------------------------------------------------------------------------
def advance(rollout: Rollout, now: datetime | None = None, clients: dict | None = None) -> Rollout:
    """Move ``rollout`` on if it is due: start the first step once the canary is healthy; at the end of each bake
    time evaluate the gates and roll back, go to the next step, or promote."""
    now = now or timezone.now()
    rollout.refresh_from_db()
    if rollout.status == RolloutStatus.PENDING:
        return _start(rollout, now)
    if rollout.status != RolloutStatus.RUNNING or rollout.step_started_at is None:
        return rollout
    if not rollout.canary_url:
        # The canary is down (crashed, or the control plane restarted): hold until it is back, within limits.
        lost = rollout.canary_lost_at
        if lost and now - lost > timedelta(seconds=settings.WORKER_START_TIMEOUT_S):
            return rollback(
                audit.SYSTEM, rollout, "the canary worker stopped answering and did not come back", gate="health"
            )
        return rollout
    if now - rollout.step_started_at < timedelta(seconds=rollout.bake_s):
        return rollout
    results = gate_checks.evaluate(rollout, rollout.step_started_at, now, clients or gate_clients(rollout))
    figures = {r.gate: r.as_dict() for r in results}
    step = rollout.current_step
    verdicts = ", ".join(f"{r.gate} {r.verdict}" for r in results)
    log(rollout, "gates", f"step {step + 1} ({rollout.steps[step]}%): {verdicts}", results=figures)
    Rollout.objects.filter(pk=rollout.pk).update(figures=figures)
    rollout.figures = figures
    failed = [r for r in results if r.verdict == gate_checks.FAIL]
    if failed:
        first = failed[0]
        reason = (
            f"gate {first.gate} failed at step {step + 1}: {first.detail} (value {first.value}, limit "
            f"{first.threshold})"
        )
        return rollback(audit.SYSTEM, rollout, reason, gate=first.gate, figures=figures)
    if step + 1 >= len(rollout.steps):
        return promote(audit.SYSTEM, rollout, reason=f"all {len(rollout.steps)} steps passed their gates")
    updated = Rollout.objects.filter(pk=rollout.pk, status=RolloutStatus.RUNNING, current_step=step).update(
        current_step=step + 1, step_started_at=now
    )
    if updated:
        rollout.refresh_from_db()
        log(
            rollout,
            "step",
            f"step {step + 2}/{len(rollout.steps)}: {rollout.steps[step + 1]}% of traffic to the canary",
        )
        audit.record(audit.SYSTEM, "rollout.step", rollout, after={"step": step + 2, "weight": rollout.weight})
    return rollout


def _start(rollout: Rollout, now: datetime) -> Rollout:
    if rollout.canary_ready_at is None:
        if now - rollout.created_at > timedelta(seconds=settings.WORKER_START_TIMEOUT_S):
            return rollback(
                audit.SYSTEM,
                rollout,
                "the canary worker did not become healthy in time",
                gate="health",
                status=RolloutStatus.FAILED,
            )
        return rollout
    updated = Rollout.objects.filter(pk=rollout.pk, status=RolloutStatus.PENDING).update(
        status=RolloutStatus.RUNNING, current_step=0, step_started_at=now
    )
    if updated:
        rollout.refresh_from_db()
        log(rollout, "step", f"step 1/{len(rollout.steps)}: {rollout.steps[0]}% of traffic to the canary")
        audit.record(audit.SYSTEM, "rollout.step", rollout, after={"step": 1, "weight": rollout.weight})
    return rollout


def gate_clients(rollout: Rollout) -> dict:
    """Worker clients for the gates that measure through the workers, and the golden texts to score."""
    deployment = rollout.deployment
    clients: dict = {"golden_texts": golden_texts(rollout)}
    if deployment.worker_url:
        clients["stable"] = WorkerClient.for_deployment(deployment.pk, deployment.worker_url)
    if rollout.canary_url:
        clients["canary"] = WorkerClient.for_deployment(deployment.pk, rollout.canary_url)
    return clients


def golden_texts(rollout: Rollout) -> list[str]:
    """The texts the quality gate scores both versions on (see controlplane/services/golden.py)."""
    return golden_texts_for(rollout.base_revision.model_version)


def advance_all(now: datetime | None = None) -> dict:
    """The scheduled job: move every active rollout on (each in its own try, so one failing does not stop the
    others)."""
    moved, errors = 0, {}
    for rollout in active_rollouts():
        try:
            before = (rollout.status, rollout.current_step)
            after = advance(rollout, now)
            moved += (after.status, after.current_step) != before
        except Exception as exc:
            logger.exception("advancing rollout %s failed", rollout.pk)
            errors[str(rollout.pk)] = f"{type(exc).__name__}: {exc}"
    return {"active": active_rollouts().count(), "moved": moved, "errors": errors}


def active_rollouts():
    return Rollout.objects.filter(status__in=ACTIVE).select_related("deployment", "target_model_version")
