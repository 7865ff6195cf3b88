"""The scheduler's one door to the alerts: ``controlplane.alerts.service.signal``, imported when first needed.

The alerts module may not be installed in this build (it is written beside the scheduler); then a signal is logged
and dropped, and the scheduler works on. A failing alert service is logged and never breaks a job's bookkeeping.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["check_scheduler_heartbeat", "signal"]

SERVICE = "controlplane.alerts.service"


def _service(name: str):
    """``controlplane.alerts.service.<name>``, or None while the alerts module (or that function) does not exist."""
    try:
        if importlib.util.find_spec(SERVICE) is None:
            return None
    except ModuleNotFoundError:
        return None
    return getattr(importlib.import_module(SERVICE), name, None)


def signal(
    kind: str,
    deployment: Any,
    key: str,
    firing: bool,
    title: str,
    summary: str,
    values: dict,
    series: Any = None,
) -> bool:
    """Tell the alerts that condition ``kind``/``key`` fires (or has cleared). True when the alerts took it."""
    try:
        send = _service("signal")
        if send is None:
            logger.info("alerts are not installed; %s %s %s: %s", kind, key, "firing" if firing else "clear", title)
            return False
        send(kind, deployment, key, firing, title, summary, values, series=series)
    except Exception:
        logger.exception("signalling %s %s to the alerts failed", kind, key)
        return False
    return True


def check_scheduler_heartbeat(last_beat_at: datetime | None, now: datetime) -> bool | None:
    """The alerts' own watchdog entry, when they have one: it fires or clears the ``scheduler_heartbeat`` alert from
    the time of the last sign of life (by the alert rule's ``max_age_s``) and delivers the e-mails itself, since the
    scheduler that normally delivers them is the one that stopped. None when the alerts do not offer it."""
    try:
        check = _service("check_scheduler_heartbeat")
        if check is None:
            return None
        return bool(check(last_beat_at, now=now))
    except Exception:
        logger.exception("the alerts' scheduler heartbeat check failed")
        return False
