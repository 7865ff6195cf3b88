"""The notification outbox: alert events are queued as ``Notification`` rows and sent by
``deliver_pending_notifications``, which the scheduler calls every few seconds (and anyone may call right after an
alert fires).

Each row is claimed with one conditional UPDATE before it is sent, so two processes never send the same e-mail; a
claim left by a process that died is taken over after ``ALERT_CLAIM_TIMEOUT_S``. Temporary failures are retried
with exponential backoff up to ``ALERT_MAX_ATTEMPTS`` tries; permanent failures stop at once. Every try is stored
as a ``NotificationAttempt``, and one notification's failure never stops the others from being sent.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from controlplane.choices import NotificationAttemptOutcome, NotificationStatus, Role
from controlplane.models import Alert, AlertRule, Notification, NotificationAttempt, User
from controlplane.services import audit
from controlplane.services.errors import Conflict

from .messages import render_subject
from .transports import TRANSPORTS, TransportError

logger = logging.getLogger(__name__)

__all__ = ["backoff_s", "deliver_pending_notifications", "enqueue", "recipients_for", "retry_notification"]

MAX_BACKOFF_S = 3600
BATCH = 100


def recipients_for(rule: AlertRule | None) -> list[str]:
    """The rule's recipients; else ``ONCALL_EMAILS``; else the e-mail addresses of active admins."""
    if rule is not None and rule.recipients:
        return list(rule.recipients)
    if settings.ONCALL_EMAILS:
        return list(settings.ONCALL_EMAILS)
    admins = User.objects.filter(is_active=True).filter(Q(role=Role.ADMIN) | Q(is_superuser=True)).exclude(email="")
    return sorted(set(admins.values_list("email", flat=True)))


def enqueue(alert: Alert, event: str, now: datetime) -> Notification:
    """Queue one notification about ``alert`` and count it as notified (call inside the alert's transaction)."""
    notification = Notification.objects.create(
        alert=alert,
        event=event,
        transport="email",
        recipients=recipients_for(alert.rule),
        next_attempt_at=now,
        created_at=now,
    )
    Alert.objects.filter(pk=alert.pk).update(last_notified_at=now, notification_count=alert.notification_count + 1)
    alert.last_notified_at, alert.notification_count = now, alert.notification_count + 1
    return notification


def backoff_s(attempt: int) -> float:
    """Seconds to wait after failed try number ``attempt``: base, 2×base, 4×base…, at most an hour."""
    return min(settings.ALERT_RETRY_BASE_S * 2 ** (attempt - 1), MAX_BACKOFF_S)


def _claimable(now: datetime) -> Q:
    stale = now - timedelta(seconds=settings.ALERT_CLAIM_TIMEOUT_S)
    return Q(status=NotificationStatus.PENDING) & (Q(claimed_at=None) | Q(claimed_at__lt=stale))


def deliver_pending_notifications(now: datetime | None = None, *, limit: int = BATCH) -> dict[str, int]:
    """Send the notifications that are due, oldest first. Returns counts: ``sent``, ``retrying``, ``failed``,
    ``skipped`` (claimed by another process meanwhile) and ``deferred`` (left for the next call because the mail
    server could not be reached at all: the other e-mails keep their tries for when it is back)."""
    now = now or timezone.now()
    due = (
        Notification.objects.filter(_claimable(now), next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("id", "transport")[:limit]
    )
    counts: Counter[str] = Counter()
    unreachable: set[str] = set()  # transports whose server could not be reached in this round
    for pk, transport in list(due):
        if transport in unreachable:
            counts["deferred"] += 1  # not tried, so no try is used up while the server is down
            continue
        claimed = Notification.objects.filter(_claimable(now), pk=pk).update(claimed_at=now)
        if claimed != 1:
            counts["skipped"] += 1
            continue
        result, server_down = _attempt(pk, now)
        counts[result] += 1
        if server_down:
            unreachable.add(transport)
    return dict(counts)


def _send(notification: Notification) -> tuple[str, str, str, bool]:
    """(outcome, error, subject, server unreachable) of one try; never raises."""
    alert, subject = notification.alert, ""
    try:
        subject = render_subject(alert, notification.event, at=notification.created_at)
        TRANSPORTS[notification.transport]().notify(alert, notification)
    except TransportError as exc:
        outcome = NotificationAttemptOutcome.TEMPORARY_FAILURE
        if exc.permanent:
            outcome = NotificationAttemptOutcome.PERMANENT_FAILURE
        return outcome, str(exc), subject, exc.unreachable
    except Exception as exc:  # a bug or a broken template: record it, keep delivering the others
        logger.exception("notification %s could not be built or sent", notification.pk)
        return NotificationAttemptOutcome.PERMANENT_FAILURE, f"{type(exc).__name__}: {exc}", subject, False
    return NotificationAttemptOutcome.SENT, "", subject, False


def _attempt(pk: int, now: datetime) -> tuple[str, bool]:
    notification = Notification.objects.select_related("alert__rule", "alert__deployment").get(pk=pk)
    outcome, error, subject, server_down = _send(notification)
    number = notification.attempt_count + 1
    changes: dict[str, Any] = {
        "attempt_count": number,
        "claimed_at": None,
        "last_error": error,
        "subject": subject[:300],
    }
    if outcome == NotificationAttemptOutcome.SENT:
        result = "sent"
        changes.update(status=NotificationStatus.SENT, finished_at=now)
    elif outcome == NotificationAttemptOutcome.TEMPORARY_FAILURE and number < settings.ALERT_MAX_ATTEMPTS:
        result = "retrying"
        changes.update(next_attempt_at=now + timedelta(seconds=backoff_s(number)))
    else:
        result = "failed"
        if outcome == NotificationAttemptOutcome.TEMPORARY_FAILURE:
            changes["last_error"] = f"gave up after {number} attempts; last: {error}"
        changes.update(status=NotificationStatus.FAILED, finished_at=now)
    with transaction.atomic():
        NotificationAttempt.objects.create(
            notification=notification,
            number=number,
            at=now,
            transport=notification.transport,
            recipients=notification.recipients,
            subject=subject[:300],
            outcome=outcome,
            error=error,
        )
        Notification.objects.filter(pk=pk).update(**changes)
    log = logger.info if result == "sent" else logger.warning
    log("notification %s (alert %s) try %s: %s %s", pk, notification.alert_id, number, outcome, error)
    return result, server_down


def retry_notification(actor: audit.Actor, notification: Notification, now: datetime | None = None) -> Notification:
    """Queue a failed notification for one more try (after fixing the mail settings); earlier attempts stay."""
    now = now or timezone.now()
    with transaction.atomic():
        # the recipients are found again: a retry after fixing them (ONCALL_EMAILS, an admin's address) reaches them
        updated = Notification.objects.filter(pk=notification.pk, status=NotificationStatus.FAILED).update(
            status=NotificationStatus.PENDING,
            next_attempt_at=now,
            finished_at=None,
            claimed_at=None,
            recipients=recipients_for(notification.alert.rule),
        )
        if updated != 1:
            raise Conflict(f"notification {notification.pk} is {notification.status}; only a failed one can be retried")
        audit.record(
            actor,
            "notification.retry",
            notification,
            before={"status": NotificationStatus.FAILED},
            after={"status": NotificationStatus.PENDING},
        )
    notification.refresh_from_db()
    return notification
