"""The audit log: every state change, who made it, and the state before and after."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from controlplane.choices import AuditSource

__all__ = ["AuditEvent"]


class AuditEvent(models.Model):
    """One recorded change. ``actor`` is empty for changes the system made itself (scheduler, supervisor)."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_name = models.CharField(max_length=150, help_text="Kept when the user is deleted; 'system' for the system.")
    source = models.CharField(max_length=16, choices=AuditSource.choices, default=AuditSource.SYSTEM)
    action = models.CharField(max_length=64, db_index=True, help_text="e.g. deployment.update, model_version.create")
    object_type = models.CharField(max_length=64, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=255, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.object_repr}"
