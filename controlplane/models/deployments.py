"""Deployments: a model version placed on a node with a config, and the immutable history of that config."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from controlplane.choices import DeploymentStatus, DesiredState, WorkerEventKind

from .inventory import GPU, Node
from .registry import ModelVersion, name_validator

__all__ = ["Deployment", "DeploymentRevision", "WorkerEvent"]


class Deployment(models.Model):
    """A model version served on a node. What it serves and how is its current revision; placement is here."""

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="deployments")
    gpus = models.ManyToManyField(GPU, blank=True, related_name="deployments")
    desired_state = models.CharField(max_length=16, choices=DesiredState.choices, default=DesiredState.RUNNING)
    status = models.CharField(max_length=16, choices=DeploymentStatus.choices, default=DeploymentStatus.PENDING)
    status_detail = models.CharField(max_length=500, blank=True)
    current_revision = models.ForeignKey(
        "DeploymentRevision", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # What the supervisor reports about the worker serving this deployment.
    worker_url = models.CharField(max_length=255, blank=True, help_text="Where the worker answers, when it does.")
    worker_pid = models.IntegerField(null=True, blank=True)
    worker_started_at = models.DateTimeField(null=True, blank=True)
    restart_requested_at = models.DateTimeField(null=True, blank=True)
    applied_revision = models.PositiveIntegerField(
        null=True, blank=True, help_text="The revision the worker runs; behind current_revision while applying."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def model_version(self) -> ModelVersion | None:
        return self.current_revision.model_version if self.current_revision else None

    @property
    def config(self) -> dict:
        return dict(self.current_revision.config) if self.current_revision else {}


class DeploymentRevision(models.Model):
    """One immutable state of a deployment: the model version and the full config. Changes add revisions."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="revisions")
    config = models.JSONField()
    comment = models.CharField(max_length=500, blank=True)
    restored_from = models.PositiveIntegerField(null=True, blank=True, help_text="The revision a rollback restored.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["deployment", "-number"]
        constraints = [models.UniqueConstraint(fields=["deployment", "number"], name="unique_revision_number")]

    def __str__(self) -> str:
        return f"{self.deployment.name}@{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("Deployment revisions are immutable; write a new revision instead.")
        super().save(*args, **kwargs)


class WorkerEvent(models.Model):
    """Something that happened to a deployment's worker: started, exited (with its exit code and last log lines),
    restarted, a config applied, a model swapped."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="worker_events")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=32, choices=WorkerEventKind.choices)
    message = models.CharField(max_length=500)
    exit_code = models.IntegerField(null=True, blank=True)
    log_tail = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.deployment.name} {self.kind} {self.at:%Y-%m-%d %H:%M:%S}"
