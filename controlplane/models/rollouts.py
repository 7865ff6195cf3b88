"""Rollouts: a new model version or config brought to a deployment gradually, with gates and automatic rollback."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from controlplane.choices import RolloutStatus, RolloutStrategy

from .deployments import Deployment, DeploymentRevision
from .registry import ModelVersion

__all__ = ["Rollout", "RolloutEvent"]


class Rollout(models.Model):
    """A candidate (``target_model_version`` + ``target_config``) served by a canary worker beside the stable one.

    ``steps`` are canary traffic shares in percent (``[10, 50, 100]``); each is held ``bake_s`` seconds, then the
    gates compare canary and stable over that window. Blue-green has one step of 0 % (warm up and check), then
    switches all traffic at once. State is kept here, so a restarted control plane resumes where it was.
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="rollouts")
    strategy = models.CharField(max_length=16, choices=RolloutStrategy.choices, default=RolloutStrategy.CANARY)
    status = models.CharField(max_length=16, choices=RolloutStatus.choices, default=RolloutStatus.PENDING)
    base_revision = models.ForeignKey(DeploymentRevision, on_delete=models.PROTECT, related_name="+")
    target_model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="rollouts")
    target_config = models.JSONField()
    steps = models.JSONField(help_text="Canary traffic per step, in percent.")
    bake_s = models.PositiveIntegerField(default=300)
    gates = models.JSONField(default=dict, help_text="Gate thresholds (defaults filled in).")
    current_step = models.PositiveIntegerField(default=0)
    step_started_at = models.DateTimeField(null=True, blank=True)
    canary_url = models.CharField(max_length=255, blank=True)
    canary_pid = models.IntegerField(null=True, blank=True)
    canary_ready_at = models.DateTimeField(null=True, blank=True)
    canary_lost_at = models.DateTimeField(null=True, blank=True, help_text="When the canary last stopped answering.")
    result_revision = models.ForeignKey(
        DeploymentRevision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    failed_gate = models.CharField(max_length=32, blank=True)
    reason = models.TextField(blank=True)
    figures = models.JSONField(default=dict, blank=True, help_text="The gate values of the last evaluation.")
    comment = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment"],
                condition=Q(status__in=RolloutStatus.active()),
                name="one_active_rollout_per_deployment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.deployment.name} → {self.target_model_version} ({self.get_status_display()})"

    @property
    def is_active(self) -> bool:
        return self.status in RolloutStatus.active()

    @property
    def weight(self) -> int:
        """The canary's share of traffic now, in percent."""
        if self.status not in (RolloutStatus.RUNNING, RolloutStatus.PAUSED) or not self.canary_url:
            return 0
        return int(self.steps[min(self.current_step, len(self.steps) - 1)])


class RolloutEvent(models.Model):
    """The decision log: steps, gate evaluations with their figures, decisions and manual actions."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=16)  # step, gates, decision, action, worker
    message = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.kind}: {self.message}"
