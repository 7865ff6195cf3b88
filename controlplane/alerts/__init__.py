"""Alerting: rule kinds and evaluation, the alert life cycle, notification transports (e-mail) and delivery.

What other parts call lives in its module: ``service.signal`` (report a condition), ``service.evaluate_alert_rules``
and ``delivery.deliver_pending_notifications`` (scheduler jobs), ``service.check_scheduler_heartbeat`` (a watchdog
outside the scheduler). Alert kinds are declared in ``evaluators.EVALUATORS`` and ``kinds.SIGNALLED``.
"""
