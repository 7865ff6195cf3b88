"""What the /v1 gateway records: one row per inference request, written in batches off the hot path.

Usage per token and deployment, latency and error-rate alerts, drift checks and rollout gates all read these rows;
``variant`` says whether the stable or the canary version served the request, so gates compare like with like.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from .accounts import ApiToken
from .deployments import Deployment
from .registry import ModelVersion

__all__ = ["InferenceRecord"]


class InferenceRecord(models.Model):
    """One request through the gateway (served, cached or refused)."""

    STABLE = "stable"
    CANARY = "canary"

    at = models.DateTimeField(db_index=True)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="inference_records")
    revision = models.PositiveIntegerField(null=True, blank=True)
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL)
    variant = models.CharField(max_length=16, default=STABLE)
    token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    endpoint = models.CharField(max_length=32)
    session_id = models.CharField(max_length=128, blank=True)
    status_code = models.PositiveSmallIntegerField()
    cached = models.BooleanField(default=False)
    streamed = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_s = models.FloatField(help_text="From the gateway receiving the request to the last byte sent.")
    ttft_s = models.FloatField(null=True, blank=True, help_text="To the first generated token (streams only).")
    finish_reason = models.CharField(max_length=32, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [
            models.Index(fields=["deployment", "at"], name="inference_deployment_at"),
            models.Index(fields=["token", "at"], name="inference_token_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.deployment_id} {self.endpoint} {self.status_code}"

    @property
    def ok(self) -> bool:
        return self.status_code < 400
