"""The hardware inventory: registering this host, and changes to nodes and GPUs."""

from __future__ import annotations

import os
import socket

import psutil
from django.conf import settings
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from controlplane.choices import NodeRole, NodeStatus
from controlplane.models import GPU, Node

from . import audit
from .errors import Conflict

__all__ = ["create", "delete", "local_hostname", "register_local_node", "sync_local_gpus", "update"]


def local_hostname() -> str:
    return settings.NODE_NAME or socket.gethostname()


def register_local_node(actor: audit.Actor = audit.SYSTEM) -> Node:
    """Create or refresh the node this process runs on, with its real CPU and memory figures."""
    figures = {
        "cpu_cores": os.cpu_count() or 1,
        "memory_bytes": psutil.virtual_memory().total,
        "last_seen": timezone.now(),
        "status": NodeStatus.ONLINE,
        "is_local": True,
    }
    with transaction.atomic():
        node = Node.objects.select_for_update().filter(hostname=local_hostname()).first()
        if node is None:
            node = Node.objects.create(hostname=local_hostname(), role=NodeRole.COMBINED, **figures)
            audit.record(actor, "node.create", node, after=audit.snapshot(node), message="registered the local node")
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
