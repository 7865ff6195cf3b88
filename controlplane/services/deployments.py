"""Deployment changes. Each change is one transaction: the deployment, a new immutable revision when what it serves
changes, and an audit event; after commit, ``deployment_changed`` tells the supervisor to apply it."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max
from django.dispatch import Signal

from controlplane.choices import DeploymentStatus, DesiredState, ModelStatus
from controlplane.models import GPU, Deployment, DeploymentRevision, ModelVersion, Node

from . import audit
from .deployment_config import diff_configs, validate_config
from .errors import InvalidInput
from .fit import check_fit, check_precision_on_device

__all__ = [
    "commit_revision",
    "create_deployment",
    "deployment_changed",
    "revision_diff",
    "rollback_deployment",
    "update_deployment",
]

# Sent after the transaction commits, with ``deployment`` and ``revision`` (None when only placement/state changed).
deployment_changed = Signal()


def _check_placement(node: Node, gpus: list[GPU]) -> None:
    foreign = [gpu for gpu in gpus if gpu.node_id != node.pk]
    if foreign:
        names = ", ".join(str(gpu) for gpu in foreign)
        raise InvalidInput.field("gpus", f"must belong to node {node.hostname}; these do not: {names}")


def _check_model_version(model_version: ModelVersion) -> None:
    if model_version.status == ModelStatus.DEPRECATED:
        raise InvalidInput.field("model_version", f"{model_version} is deprecated and cannot be deployed")


def _snapshot(deployment: Deployment) -> dict[str, Any]:
    data = audit.snapshot(deployment)
    revision = deployment.current_revision
    if revision is not None:
        data.update(revision=revision.number, model_version=str(revision.model_version), config=revision.config)
    return data


def _notify(deployment: Deployment, revision: DeploymentRevision | None) -> None:
    transaction.on_commit(
        lambda: deployment_changed.send(sender=Deployment, deployment=deployment, revision=revision), robust=True
    )


def _new_revision(actor, deployment, model_version, config, comment="", restored_from=None) -> DeploymentRevision:
    number = (deployment.revisions.aggregate(n=Max("number"))["n"] or 0) + 1
    revision = DeploymentRevision.objects.create(
        deployment=deployment,
        number=number,
        model_version=model_version,
        config=config,
        comment=comment,
        restored_from=restored_from,
        created_by=actor.user,
    )
    deployment.current_revision = revision
    return revision


def create_deployment(
    actor: audit.Actor,
    *,
    name: str,
    model_version: ModelVersion,
    node: Node,
    gpus: list[GPU] | None = None,
    config: dict | None = None,
    desired_state: str = DesiredState.RUNNING,
    comment: str = "",
) -> Deployment:
    gpus = list(gpus or [])
    if Deployment.objects.filter(name=name).exists():
        raise InvalidInput.field("name", f"a deployment named {name!r} already exists")
    _check_placement(node, gpus)
    _check_model_version(model_version)
    full_config = validate_config(config or {}, model_version)
    check_precision_on_device(full_config, gpus)
    if desired_state == DesiredState.RUNNING:
        check_fit(model_version, full_config, node, gpus)
    with transaction.atomic():
        deployment = Deployment.objects.create(
            name=name,
            node=node,
            desired_state=desired_state,
            created_by=actor.user,
            status=DeploymentStatus.PENDING if desired_state == DesiredState.RUNNING else DeploymentStatus.STOPPED,
        )
        deployment.gpus.set(gpus)
        revision = _new_revision(actor, deployment, model_version, full_config, comment or "created")
        deployment.save(update_fields=["current_revision"])
        audit.record(actor, "deployment.create", deployment, after=_snapshot(deployment))
        _notify(deployment, revision)
    return deployment


def update_deployment(
    actor: audit.Actor,
    deployment: Deployment,
    *,
    model_version: ModelVersion | None = None,
    config: dict | None = None,
    gpus: list[GPU] | None = None,
    desired_state: str | None = None,
    comment: str = "",
) -> Deployment:
    """Apply a change. A new revision is written only when the model version or the config actually changes."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
        current = deployment.current_revision
        assert current is not None  # deployments are created with their first revision
        before = _snapshot(deployment)
        new_model = model_version or current.model_version
        if model_version is not None and model_version.pk != current.model_version_id:
            _check_model_version(model_version)
        new_config = validate_config(config or {}, new_model, base=current.config)
        new_gpus = list(gpus) if gpus is not None else list(deployment.gpus.all())
        _check_placement(deployment.node, new_gpus)
        check_precision_on_device(new_config, new_gpus)
        new_state = desired_state or deployment.desired_state
        if new_state == DesiredState.RUNNING:
            check_fit(new_model, new_config, deployment.node, new_gpus, exclude=deployment)
        revision = None
        if new_model.pk != current.model_version_id or new_config != current.config:
            revision = _new_revision(actor, deployment, new_model, new_config, comment)
        if gpus is not None:
            deployment.gpus.set(new_gpus)
        if new_state != deployment.desired_state:
            deployment.desired_state = new_state
            if new_state == DesiredState.STOPPED:
                deployment.status = DeploymentStatus.STOPPED
            elif deployment.status == DeploymentStatus.STOPPED:
                deployment.status = DeploymentStatus.PENDING
        deployment.save()
        after = _snapshot(deployment)
        if after != before:
            audit.record(actor, "deployment.update", deployment, before=before, after=after, message=comment)
            _notify(deployment, revision)
    return deployment


def rollback_deployment(actor: audit.Actor, deployment: Deployment, number: int, comment: str = "") -> Deployment:
    """Restore revision ``number`` as a new revision (history is never rewritten)."""
    target = deployment.revisions.filter(number=number).select_related("model_version").first()
    if target is None:
        raise InvalidInput.field("revision", f"deployment {deployment.name} has no revision {number}")
    if target.pk == deployment.current_revision_id:
        raise InvalidInput.field("revision", f"revision {number} is already the current revision")
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
        before = _snapshot(deployment)
        config = validate_config({}, target.model_version, base=target.config)
        check_precision_on_device(config, list(deployment.gpus.all()))
        if deployment.desired_state == DesiredState.RUNNING:
            check_fit(target.model_version, config, deployment.node, list(deployment.gpus.all()), exclude=deployment)
        revision = _new_revision(
            actor,
            deployment,
            target.model_version,
            config,
            comment or f"rollback to revision {number}",
            restored_from=number,
        )
        deployment.save()
        audit.record(
            actor,
            "deployment.rollback",
            deployment,
            before=before,
            after=_snapshot(deployment),
            message=f"restored revision {number} as revision {revision.number}",
        )
        _notify(deployment, revision)
    return deployment


def commit_revision(
    actor: audit.Actor, deployment: Deployment, model_version: ModelVersion, config: dict, comment: str = ""
) -> DeploymentRevision:
    """Make an already-checked model version and config the deployment's current revision (a promoted rollout).
    Call inside a transaction that holds the deployment's row."""
    before = _snapshot(deployment)
    revision = _new_revision(actor, deployment, model_version, config, comment)
    deployment.save(update_fields=["current_revision", "updated_at"])
    audit.record(actor, "deployment.update", deployment, before=before, after=_snapshot(deployment), message=comment)
    _notify(deployment, revision)
    return revision


def revision_diff(older: DeploymentRevision, newer: DeploymentRevision) -> list[dict]:
    """What changed between two revisions, model version included."""
    changes = diff_configs(older.config, newer.config)
    if older.model_version_id != newer.model_version_id:
        changes.insert(
            0, {"key": "model_version", "before": str(older.model_version), "after": str(newer.model_version)}
        )
    return changes
