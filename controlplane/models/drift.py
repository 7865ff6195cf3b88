"""Drift checks: is a deployment getting slower or worse than its baseline? Each check keeps what it decided on."""

from __future__ import annotations

from django.db import models

from controlplane.choices import DriftKind, DriftVerdict

from .deployments import Deployment
from .registry import ModelVersion

__all__ = ["DriftCheck"]


class DriftCheck(models.Model):
    """One check of one kind on one deployment: its statistic, the threshold, the verdict, and the data it used
    (summaries of both windows, per-item scores, the outputs), so that a person can see why it fired."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="drift_checks")
    kind = models.CharField(max_length=16, choices=DriftKind.choices)
    verdict = models.CharField(max_length=16, choices=DriftVerdict.choices)
    statistic = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    revision = models.PositiveIntegerField(null=True, blank=True)
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL)
    trigger = models.CharField(max_length=16, default="scheduled")  # scheduled, manual
    started_at = models.DateTimeField(db_index=True)
    duration_s = models.FloatField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["deployment", "kind", "started_at"], name="drift_deployment_kind_at")]

    def __str__(self) -> str:
        return f"{self.deployment.name} {self.kind} {self.verdict} at {self.started_at:%Y-%m-%d %H:%M}"
