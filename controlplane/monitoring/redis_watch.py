"""In every ``serve`` process with REDIS_URL set: raises the ``redis_unreachable`` alert while Redis does not answer,
and clears it when it answers again. Without Redis the gateway keeps serving (no response cache, local routes and
limits), websockets get no live pushes and several processes stop sharing their caches: someone should know."""

from __future__ import annotations

import logging

from django.conf import settings

from controlplane import runtime
from controlplane.alerts.service import signal
from controlplane.choices import AlertKind
from controlplane.services import redis_check

logger = logging.getLogger(__name__)

__all__ = ["RedisWatch"]


class RedisWatch(runtime.ServiceThread):
    name = "redis-watch"
    idle_s = 10.0

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.down: bool | None = None  # unknown until the first check

    def step(self) -> bool:
        try:
            redis_check.ping(self.url)
            problem = ""
        except RuntimeError as exc:
            problem = str(exc)
        down = bool(problem)
        if down == self.down:
            return False
        self.down = down
        where = redis_check.describe(self.url)
        try:
            signal(
                AlertKind.REDIS_UNREACHABLE,
                None,
                where,
                down,
                f"Redis at {where} does not answer" if down else f"Redis at {where} answers again",
                f"{problem}. The gateway keeps serving without its response cache and with this process's own "
                "routes and limits; live pages get no pushes; several control-plane processes no longer share "
                "their caches. Start Redis again (it is checked every 10 s)."
                if down
                else "Redis answers again; the gateway uses it again by itself.",
                {"redis": where, "error": problem},
            )
        except Exception:
            logger.exception("reporting Redis %s to the alerts failed", "down" if down else "up")
        return True


def _factory() -> RedisWatch | None:
    return RedisWatch(settings.REDIS_URL) if settings.REDIS_URL else None


runtime.register(_factory, order=70)
