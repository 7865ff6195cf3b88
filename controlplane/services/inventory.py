"""The hardware inventory: registering this host, and changes to nodes and GPUs."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psutil
from django.conf import settings
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from controlplane.choices import DeploymentStatus, DesiredState, NodeRole, NodeStatus
from controlplane.models import GPU, Deployment, Node

from . import audit
from .errors import Conflict

logger = logging.getLogger(__name__)

__all__ = [
    "HEARTBEAT_INTERVAL_S",
    "STALE_AFTER_S",
    "Unattended",
    "check_control_planes",
    "create",
    "delete",
    "heartbeat",
    "local_hostname",
    "local_node_uid",
    "register_local_node",
    "sync_local_gpus",
    "unattended_deployments",
    "update",
]

NODE_ID_FILE = "node_id"  # in VAR_DIR: this node's identity (a UUID), written on the first start
HEARTBEAT_INTERVAL_S = 5.0  # how often a running control plane stamps its node's last_seen (the supervisor's step)
STALE_AFTER_S = 90  # a node not seen for this long has no control plane running (several missed heartbeats)


def local_hostname() -> str:
    return settings.NODE_NAME or socket.gethostname()


def local_node_uid(var_dir: Path | None = None) -> uuid.UUID:
    """This node's identity: the UUID in ``VAR_DIR/node_id``, created (mode 0600) on the first start.

    A file beside the database's other local state rather than the host name (which an operator may change) or the
    row's pk (which only the database knows, and a fresh database would hand to another node)."""
    path = Path(var_dir or settings.VAR_DIR) / NODE_ID_FILE
    try:
        return uuid.UUID(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise RuntimeError(f"{path} does not hold a node id (a UUID): {exc}; remove it to start as a new node") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    uid = uuid.uuid4()
    partial = path.with_name(f".{NODE_ID_FILE}.{uid.hex}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(f"{uid}\n")
    try:
        os.link(partial, path)  # atomic, and never replaces: two processes starting at once agree on one id
    except FileExistsError:
        return uuid.UUID(path.read_text(encoding="ascii").strip())
    finally:
        partial.unlink()
    return uid


def _free_hostname(wanted: str, uid: uuid.UUID) -> str:
    """``wanted``, or with a suffix of the node id when another node has that name already."""
    return wanted if not Node.objects.filter(hostname=wanted).exists() else f"{wanted[:200]}-{str(uid)[:8]}"


def _find_local_node(uid: uuid.UUID) -> Node | None:
    """The row of this node: by its id; else (the first start with an id) the unclaimed row of its host name."""
    node = Node.objects.select_for_update().filter(uid=uid).first()
    if node is None:
        node = Node.objects.select_for_update().filter(hostname=local_hostname(), uid__isnull=True).first()
    return node


def register_local_node(actor: audit.Actor = audit.SYSTEM) -> Node:
    """Create or refresh the node this process runs on, with its real CPU and memory figures.

    The node is found by its id (``local_node_uid``), never by its host name: renaming it keeps its deployments."""
    uid = local_node_uid()
    figures = {
        "cpu_cores": os.cpu_count() or 1,
        "memory_bytes": psutil.virtual_memory().total,
        "last_seen": timezone.now(),
        "status": NodeStatus.ONLINE,
        "is_local": True,
        "uid": uid,
    }
    with transaction.atomic():
        node = _find_local_node(uid)
        if node is None:
            hostname = _free_hostname(local_hostname(), uid)
            node = Node.objects.create(hostname=hostname, role=NodeRole.COMBINED, **figures)
            audit.record(actor, "node.create", node, after=audit.snapshot(node), message="registered the local node")
            Node.objects.exclude(pk=node.pk).filter(is_local=True).update(is_local=False)
            return node
        changed = {k: v for k, v in figures.items() if k != "last_seen" and getattr(node, k) != v}
        before = audit.snapshot(node)
        for key, value in figures.items():
            setattr(node, key, value)
        node.save()
        if changed:
            audit.record(
                actor,
                "node.update",
                node,
                before=before,
                after=audit.snapshot(node),
                message="refreshed the local node's figures",
            )
    Node.objects.exclude(pk=node.pk).filter(is_local=True).update(is_local=False)
    return node


_last_beat: dict[int, float] = {}


def heartbeat(node_id: int | None, *, now: datetime | None = None, force: bool = False) -> bool:
    """Called by the supervisor on each step: at most every ``HEARTBEAT_INTERVAL_S``, stamp this node's
    ``last_seen`` and mark the running deployments of nodes whose control plane stopped (see
    ``unattended_deployments``) as degraded, saying why. Returns whether it did anything."""
    if node_id is None:
        return False
    clock = time.monotonic()
    if not force and clock - _last_beat.get(node_id, float("-inf")) < HEARTBEAT_INTERVAL_S:
        return False
    _last_beat[node_id] = clock
    now = now or timezone.now()
    Node.objects.filter(pk=node_id).update(last_seen=now)
    for item in unattended_deployments(now):
        Deployment.objects.filter(pk=item.deployment.pk).exclude(status_detail=item.message).update(
            status=DeploymentStatus.DEGRADED, status_detail=item.message[:500]
        )
    return True


@dataclass(frozen=True)
class Unattended:
    """A deployment that should run on a node whose control plane has not been seen for ``age_s`` seconds."""

    deployment: Deployment
    node: Node
    age_s: float

    @property
    def message(self) -> str:
        return (
            f"node {self.node.hostname} has no control plane running (last seen {self.node.last_seen:%Y-%m-%d %H:%M:%S}"
            " UTC): nothing supervises this deployment's worker"
        )


def unattended_deployments(now: datetime | None = None, stale_after_s: float = STALE_AFTER_S) -> list[Unattended]:
    """Deployments that should run on a node whose control plane stopped stamping its heartbeat. A node never seen
    (no ``last_seen``: added through the API, no control plane started on it yet) is not counted: there is no
    heartbeat to miss."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=stale_after_s)
    wanted = Deployment.objects.filter(desired_state=DesiredState.RUNNING, node__last_seen__lt=cutoff)
    return [
        Unattended(d, d.node, (now - d.node.last_seen).total_seconds())
        for d in wanted.select_related("node").order_by("name")
        if d.node.last_seen is not None
    ]


def check_control_planes() -> dict:
    """A readiness check (for ``controlplane.health``, staff output): raises naming each deployment whose node has
    no control plane running."""
    missing = unattended_deployments()
    if missing:
        raise RuntimeError("; ".join(f"{item.deployment.name}: {item.message}" for item in missing))
    return {"nodes_seen": Node.objects.filter(last_seen__isnull=False).count()}


def create(actor: audit.Actor, model: type[Model], **fields) -> Model:
    with transaction.atomic():
        instance = model._default_manager.create(**fields)
        audit.record(actor, f"{model._meta.model_name}.create", instance, after=audit.snapshot(instance))
    return instance


def update(actor: audit.Actor, instance: Model, **changes) -> Model:
    with transaction.atomic():
        before = audit.snapshot(instance)
        for key, value in changes.items():
            setattr(instance, key, value)
        instance.save()
        audit.record(
            actor, f"{instance._meta.model_name}.update", instance, before=before, after=audit.snapshot(instance)
        )
    return instance


def delete(actor: audit.Actor, instance: Node | GPU) -> None:
    in_use = instance.deployments.first()
    if in_use is not None:
        raise Conflict(f"{instance} is used by deployment {in_use.name}; move or stop that deployment first")
    with transaction.atomic():
        audit.record(actor, f"{instance._meta.model_name}.delete", instance, before=audit.snapshot(instance))
        instance.delete()


def sync_local_gpus(node: Node, inventory, actor: audit.Actor = audit.SYSTEM) -> list[GPU]:
    """Register the GPUs NVML found on ``node`` and keep them current (``inventory``: an ``NvmlInventory``).

    A GPU is known by its UUID; a card that moved to another index keeps its row. A different card in a slot
    (same index, new UUID) takes over that slot's row, so deployments bound to the slot stay bound. GPUs no longer
    found are left alone (a lost GPU is still worth seeing). Without NVML nothing changes.
    """
    if not inventory.available:
        return []
    now = timezone.now()
    kept: list[GPU] = []
    for info in inventory.gpus:
        figures = {
            "index": info.index,
            "name": info.name[:128],
            "memory_total_bytes": info.memory_total_bytes,
            "driver_version": inventory.driver_version[:32],
            "cuda_version": inventory.cuda_version[:32],
        }
        with transaction.atomic():
            gpu = GPU.objects.select_for_update().filter(uuid=info.uuid).first()
            if gpu is None:
                gpu = GPU.objects.select_for_update().filter(node=node, index=info.index).first()
            if gpu is not None and gpu.node_id == node.pk and gpu.index != info.index:
                # Another row holds the new index (cards were renumbered): move it out of the way first.
                GPU.objects.filter(node=node, index=info.index).exclude(pk=gpu.pk).delete()
            if gpu is None:
                gpu = GPU.objects.create(node=node, uuid=info.uuid, last_seen=now, **figures)
                audit.record(actor, "gpu.create", gpu, after=audit.snapshot(gpu), message="discovered through NVML")
            else:
                before = audit.snapshot(gpu)
                changed = gpu.node_id != node.pk or gpu.uuid != info.uuid
                changed |= any(getattr(gpu, key) != value for key, value in figures.items())
                gpu.node, gpu.uuid, gpu.last_seen = node, info.uuid, now
                for key, value in figures.items():
                    setattr(gpu, key, value)
                gpu.save()
                if changed:
                    audit.record(
                        actor, "gpu.update", gpu, before=before, after=audit.snapshot(gpu), message="updated from NVML"
                    )
        kept.append(gpu)
    return kept
