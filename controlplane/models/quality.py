"""Golden sets: prompts with reference texts, per model version, to score quality the same way every time."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from .registry import ModelVersion

__all__ = ["GoldenSet"]


class GoldenSet(models.Model):
    """``items`` is a list of ``{"prompt", "reference"?, "output"?, "max_tokens"}`` (see ``quality.parse_items``).
    The newest set of a model version is the one used.

    ``baseline`` holds the scores of the first run on its model version (perplexity of the references, agreement of
    greedy outputs with them); drift checks compare later runs with it."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="golden_sets")
    name = models.CharField(max_length=100)
    items = models.JSONField()
    baseline = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({len(self.items)} items) for {self.model_version}"

    def texts(self) -> list[str]:
        """What perplexity is measured on: prompt + reference (real text) where the items have references, else
        prompt + the recorded output."""
        if any(item.get("reference") for item in self.items):
            return [item["prompt"] + item["reference"] for item in self.items if item.get("reference")]
        return [item["prompt"] + item["output"] for item in self.items]
