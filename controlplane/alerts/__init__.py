"""Alerting: rule kinds and evaluation, the alert life cycle, notification transports (e-mail) and delivery.

The functions other parts call are re-exported here (imported on first use, so that importing this package before
Django is set up stays harmless):

- ``signal(kind, deployment, key, firing, title, summary, values, series=None, *, threshold, series_label, now)``
- ``evaluate_alert_rules(now=None)`` and ``deliver_pending_notifications(now=None)``: scheduler jobs
- ``check_scheduler_heartbeat(last_beat_at, *, now=None, deliver=True)``: for a watchdog outside the scheduler
"""

from __future__ import annotations

__all__ = ["check_scheduler_heartbeat", "deliver_pending_notifications", "evaluate_alert_rules", "signal"]


def __getattr__(name: str):
    if name == "deliver_pending_notifications":
        from .delivery import deliver_pending_notifications

        return deliver_pending_notifications
    if name in {"signal", "evaluate_alert_rules", "check_scheduler_heartbeat"}:
        from . import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
