"""The hardware inventory: nodes and the GPUs in them."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models

from controlplane.choices import NodeRole, NodeStatus

__all__ = ["GPU", "Node"]


class Node(models.Model):
    """A host that runs the control plane, workers, or both. ``is_local`` marks the host this process runs on.

    ``uid`` is the node's identity: the control plane keeps it in ``VAR_DIR/node_id`` and finds its row by it, so
    an operator may rename a node (``hostname`` is only a label) without orphaning its deployments. A node added
    through the API has none until a control plane claims it (its first start with a matching host name).
    ``last_seen`` is the heartbeat its control plane stamps while it runs."""

    uid = models.UUIDField(
        null=True,
        blank=True,
        unique=True,
        editable=False,
        help_text="Set by the node's control plane on its first start.",
    )
    hostname = models.CharField(max_length=255, unique=True)
    address = models.CharField(max_length=255, default="127.0.0.1", help_text="Address workers on it are reached at.")
    cpu_cores = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    memory_bytes = models.BigIntegerField(validators=[MinValueValidator(1)])
    role = models.CharField(max_length=16, choices=NodeRole.choices, default=NodeRole.COMBINED)
    status = models.CharField(max_length=16, choices=NodeStatus.choices, default=NodeStatus.ONLINE)
    is_local = models.BooleanField(default=False)
    labels = models.JSONField(default=dict, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname


class GPU(models.Model):
    """A GPU in a node, as NVML reports it."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="gpus")
    index = models.PositiveIntegerField()
    uuid = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=128)
    memory_total_bytes = models.BigIntegerField(validators=[MinValueValidator(1)])
    driver_version = models.CharField(max_length=32, blank=True)
    cuda_version = models.CharField(max_length=32, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["node__hostname", "index"]
        constraints = [models.UniqueConstraint(fields=["node", "index"], name="unique_gpu_index_per_node")]
        verbose_name = "GPU"

    def __str__(self) -> str:
        return f"{self.node.hostname}/gpu{self.index} ({self.name})"
