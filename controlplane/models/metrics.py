"""Metric history: one-minute rollups (min/mean/max) of every series the collector reads, per node.

Raw samples live in memory only (``controlplane/monitoring/store.py``); these rows are what survives a restart and
what the history API answers from beyond the live window. ``prune_metrics`` deletes rows past METRICS_RETENTION_DAYS.
"""

from __future__ import annotations

from django.db import models

from .inventory import Node

__all__ = ["MetricRollup"]


class MetricRollup(models.Model):
    """One series over one minute on one node."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="metric_rollups")
    series = models.CharField(max_length=200, help_text='e.g. "gpu.0.util", "worker.3.rss_bytes"')
    minute = models.DateTimeField(help_text="Start of the minute (UTC).")
    min = models.FloatField()
    mean = models.FloatField()
    max = models.FloatField()
    count = models.PositiveIntegerField(help_text="Samples in the minute.")

    class Meta:
        ordering = ["series", "minute"]
        constraints = [
            models.UniqueConstraint(fields=["node", "series", "minute"], name="unique_rollup_per_node_series_minute")
        ]
        indexes = [models.Index(fields=["minute"], name="rollup_minute_idx")]

    def __str__(self) -> str:
        return f"{self.series} @ {self.minute:%Y-%m-%d %H:%M} on node {self.node_id}"
