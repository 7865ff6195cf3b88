"""The alert banner and the nav entry on every page: firing alerts and e-mails that failed for good stand out."""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.db.models import Count, Q
from django.utils import timezone

from controlplane.choices import AlertSeverity, AlertState, NotificationStatus
from controlplane.models import Alert, Notification

register = template.Library()

FAILED_SHOWN_FOR = timedelta(hours=24)


def alert_counts(request) -> dict:
    """Counts for the banner, computed once per request."""
    cached = getattr(request, "_alert_counts", None)
    if cached is None:
        cached = Alert.objects.aggregate(
            firing=Count("id", filter=Q(state=AlertState.FIRING)),
            critical=Count("id", filter=Q(state=AlertState.FIRING, severity=AlertSeverity.CRITICAL)),
            acknowledged=Count("id", filter=Q(state=AlertState.ACKNOWLEDGED)),
        )
        failed = Notification.objects.filter(
            status=NotificationStatus.FAILED, finished_at__gte=timezone.now() - FAILED_SHOWN_FOR
        )
        cached["failed"] = failed.count()
        cached["last_failure"] = failed.order_by("-finished_at").values_list("last_error", flat=True).first()
        request._alert_counts = cached
    return cached


@register.inclusion_tag("alerts/_banner.html", takes_context=True)
def alert_banner(context):
    request = context.get("request")
    if request is None or not getattr(request, "user", None) or not request.user.is_authenticated:
        return {"show": False}
    return {"show": True, **alert_counts(request)}


@register.inclusion_tag("alerts/_nav.html", takes_context=True)
def alert_nav(context):
    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return {"show": False}
    return {"show": True, "current": request.path.startswith("/alerts"), **alert_counts(request)}
