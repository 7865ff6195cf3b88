"""The scheduler's one door to the alerts: ``controlplane.alerts.service.signal``, imported when first needed.

The alerts module may not be installed in this build (it is written beside the scheduler); then a signal is logged
and dropped, and the scheduler works on. A failing alert service is logged and never breaks a job's bookkeeping.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["signal"]

SERVICE = "controlplane.alerts.service"


def _service_signal():
    try:
        if importlib.util.find_spec(SERVICE) is None:
            return None
    except ModuleNotFoundError:
        return None
    return getattr(importlib.import_module(SERVICE), "signal", None)


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
        send = _service_signal()
        if send is None:
            logger.info("alerts are not installed; %s %s %s: %s", kind, key, "firing" if firing else "clear", title)
            return False
        send(kind, deployment, key, firing, title, summary, values, series=series)
    except Exception:
        logger.exception("signalling %s %s to the alerts failed", kind, key)
        return False
    return True
