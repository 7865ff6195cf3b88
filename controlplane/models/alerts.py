"""Alerting: rules, the conditions they track, the alerts they raise, and the e-mails sent about them.

Everything lives in the database so that a restart loses nothing: a pending "for" duration, an open alert, a
notification still waiting for SMTP to come back, and every delivery attempt with its error.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from controlplane.choices import (
    AlertKind,
    AlertSeverity,
    AlertState,
    NotificationAttemptOutcome,
    NotificationEvent,
    NotificationStatus,
)

from .deployments import Deployment
from .registry import name_validator

__all__ = ["Alert", "AlertCondition", "AlertRule", "Notification", "NotificationAttempt"]

OPEN_STATES = (AlertState.FIRING, AlertState.ACKNOWLEDGED)


class AlertRule(models.Model):
    """What to watch (kind and parameters), where (one deployment or all), how loud (severity), how patient (``for_s``,
    ``repeat_interval_s``) and whom to tell (recipients; empty: the on-call list)."""

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules"
    )
    parameters = models.JSONField(default=dict, blank=True)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices, default=AlertSeverity.WARNING)
    for_s = models.PositiveIntegerField(default=0, help_text="The condition must hold this long before it fires.")
    repeat_interval_s = models.PositiveIntegerField(
        default=4 * 3600, help_text="Re-notify this often while firing and not acknowledged (0: never)."
    )
    recipients = models.JSONField(default=list, blank=True, help_text="E-mail addresses; empty: ONCALL_EMAILS.")
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertCondition(models.Model):
    """The state between evaluations of one (rule, deployment, key): since when the condition has held, so that a
    "for" duration survives restarts, and whether an operator resolved it by hand while it still held."""

    group_key = models.CharField(max_length=255, unique=True)
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="conditions")
    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200, blank=True)
    active_since = models.DateTimeField(null=True, blank=True, help_text="Empty while the condition does not hold.")
    suppressed = models.BooleanField(
        default=False, help_text="Resolved by an operator while true: no new alert until the condition clears."
    )
    last_values = models.JSONField(default=dict, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.group_key


class Alert(models.Model):
    """One occurrence of a condition, from firing to resolved. At most one open alert per (rule, deployment, key):
    a condition that stays true updates its alert instead of raising new ones."""

    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    rule_name = models.CharField(max_length=100, help_text="Kept when the rule is deleted.")
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    deployment_name = models.CharField(max_length=100, blank=True, help_text="Kept when the deployment is deleted.")
    key = models.CharField(max_length=200, blank=True, help_text="What within the deployment: a drift check, a job.")
    group_key = models.CharField(max_length=255, db_index=True)
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.FIRING)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices)
    title = models.CharField(max_length=300)
    summary = models.TextField(blank=True)
    values = models.JSONField(default=dict, blank=True, help_text="The figures that made it fire.")
    last_values = models.JSONField(default=dict, blank=True, help_text="The latest figures while it fires.")
    threshold = models.FloatField(null=True, blank=True)
    series = models.JSONField(default=list, blank=True, help_text="[[iso time, value], …] around the firing moment.")
    series_label = models.CharField(max_length=100, blank=True)
    cause = models.JSONField(null=True, blank=True, help_text="What changed last on the deployment before it fired.")
    started_at = models.DateTimeField(db_index=True)
    last_seen_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution = models.CharField(max_length=200, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    notification_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["group_key"], condition=Q(state__in=OPEN_STATES), name="one_open_alert_per_group"
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


class Notification(models.Model):
    """One message to send about an alert event (firing, reminder, resolved): an outbox row that the delivery loop
    claims, tries, and retries on temporary failures until it is sent or fails for good."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=16, choices=NotificationEvent.choices)
    transport = models.CharField(max_length=16, default="email")
    recipients = models.JSONField(default=list)
    subject = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="Set while one process sends it.")
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When it was sent or given up on.")
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="notification_due")]

    def __str__(self) -> str:
        return f"{self.event} of alert {self.alert_id} to {', '.join(self.recipients)}"


class NotificationAttempt(models.Model):
    """One try at sending a notification and how it went, kept so a person can see why an e-mail did not arrive."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    transport = models.CharField(max_length=16)
    recipients = models.JSONField(default=list)
    subject = models.CharField(max_length=300, blank=True)
    outcome = models.CharField(max_length=32, choices=NotificationAttemptOutcome.choices)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["notification", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of notification {self.notification_id}: {self.outcome}"
