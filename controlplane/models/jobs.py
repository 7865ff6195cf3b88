"""Scheduled jobs: every run with its outcome, each job's shared state, the scheduler lock, and run-now requests.

The job definitions themselves live in code (``jobs/registry.py``); these tables hold what happened and what
several processes must agree on (who leads, who runs a job right now), always changed with conditional UPDATEs.
"""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from controlplane.choices import JobOutcome, JobTrigger

__all__ = ["JobRun", "JobRunRequest", "JobState", "SchedulerLease"]


class JobRun(models.Model):
    """One run of a job (or one run that did not happen: skipped because the job was still running, or missed)."""

    job = models.CharField(max_length=100)
    trigger = models.CharField(max_length=16, choices=JobTrigger.choices, default=JobTrigger.SCHEDULE)
    outcome = models.CharField(max_length=16, choices=JobOutcome.choices, default=JobOutcome.RUNNING)
    scheduled_for = models.DateTimeField(null=True, blank=True, help_text="The fire time a missed run was due at.")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True, help_text="Measured with a monotonic clock.")
    result = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    error = models.CharField(max_length=500, blank=True)
    traceback = models.TextField(blank=True)
    scheduler_id = models.CharField(max_length=100, blank=True, help_text="The process that ran it.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["job", "-started_at"], name="jobrun_job_started")]

    def __str__(self) -> str:
        return f"{self.job} {self.started_at:%Y-%m-%d %H:%M:%S} {self.outcome}"


class JobState(models.Model):
    """What every process must agree on about one job: the run that holds it now (claimed atomically, so a job
    never runs twice at once across processes), when the claim lapses, its last finished run and its next run."""

    job = models.CharField(max_length=100, primary_key=True)
    running_run = models.ForeignKey(JobRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    claimed_by = models.CharField(max_length=100, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    last_run = models.ForeignKey(JobRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    next_run_at = models.DateTimeField(null=True, blank=True, help_text="Set by the leading scheduler.")

    class Meta:
        ordering = ["job"]

    def __str__(self) -> str:
        return self.job


class SchedulerLease(models.Model):
    """The scheduler lock: one row per lock name. Its owner runs the jobs until ``expires_at``; it renews the lease
    every few seconds (``renewed_at`` is the scheduler's own heartbeat) and the heartbeat job sets
    ``jobs_heartbeat_at``, which proves that jobs really run."""

    name = models.CharField(max_length=50, primary_key=True)
    owner = models.CharField(max_length=100, blank=True)
    acquired_at = models.DateTimeField(null=True, blank=True)
    renewed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    jobs_heartbeat_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.owner or 'free'}"


class JobRunRequest(models.Model):
    """Someone asked for a job to run now while a scheduler leads: the leader claims the request within a second or
    two and runs the job in its own process."""

    job = models.CharField(max_length=100)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    requested_at = models.DateTimeField()
    claimed_by = models.CharField(max_length=100, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    run = models.ForeignKey(JobRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["requested_at", "id"]
        indexes = [models.Index(fields=["claimed_at", "requested_at"], name="jobrequest_pending")]

    def __str__(self) -> str:
        return f"{self.job} requested {self.requested_at:%Y-%m-%d %H:%M:%S}"
