"""The registry of model versions: what can be deployed, where its artifact lies, and how good it was."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from controlplane.choices import ModelFormat, ModelStatus, Precision

__all__ = ["ModelVersion"]

name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    "Use letters, digits, dots, dashes and underscores, starting with a letter or digit.",
)


class ModelVersion(models.Model):
    """One version of a model: an artifact on disk with its measured size and checksum.

    ``architecture`` is read from the artifact's ``config.json`` on registration (layers, hidden size, heads, experts,
    context length) and feeds the fit check and the router-weights check.
    """

    name = models.CharField(max_length=100, validators=[name_validator])
    version = models.CharField(max_length=50, validators=[name_validator])
    format = models.CharField(max_length=8, choices=ModelFormat.choices, default=ModelFormat.MOE)
    artifact_path = models.CharField(max_length=1024)
    precision = models.CharField(
        max_length=8,
        choices=Precision.choices,
        default=Precision.FP32,
        help_text="The precision the artifact is stored in.",
    )
    parameter_count = models.BigIntegerField(validators=[MinValueValidator(1)])
    size_bytes = models.BigIntegerField(validators=[MinValueValidator(1)])
    sha256 = models.CharField(max_length=64)
    architecture = models.JSONField(default=dict, blank=True)
    baseline_quality = models.FloatField(
        null=True, blank=True, help_text="Held-out perplexity measured when the version was made (lower is better)."
    )
    status = models.CharField(max_length=16, choices=ModelStatus.choices, default=ModelStatus.REGISTERED)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="unique_model_name_version")]

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def n_experts(self) -> int | None:
        value = self.architecture.get("n_experts")
        return int(value) if value else None
