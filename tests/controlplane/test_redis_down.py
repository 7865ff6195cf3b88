"""With REDIS_URL pointing at a Redis that does not answer: /readyz says so by name, and the Redis watch raises the
``redis_unreachable`` alert once, then clears it when Redis answers again."""

from __future__ import annotations

import pytest

from controlplane.choices import AlertKind, AlertState
from controlplane.models import Alert
from controlplane.monitoring.redis_watch import RedisWatch
from controlplane.services import redis_check
from tests.smtp import free_port

pytestmark = pytest.mark.django_db


def test_readyz_names_redis_when_it_does_not_answer(settings):
    from controlplane import health

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(RuntimeError, match=r"Redis at redis://127.0.0.1:\d+ does not answer"):
        health.check_redis()
    assert "redis" in health.run_checks()
    assert health.run_checks()["redis"]["ok"] is False


def test_the_redis_watch_fires_once_and_clears_when_redis_is_back(monkeypatch):
    answers = iter([False, False, True, True])

    def ping(url: str, timeout_s: float = 2.0) -> None:
        if not next(answers):
            raise RuntimeError("Redis at redis://10.0.0.9:6379 does not answer: Connection refused")

    monkeypatch.setattr(redis_check, "ping", ping)
    watch = RedisWatch("redis://:secret@10.0.0.9:6379/0")
    assert watch.step() is True  # down: fires
    assert watch.step() is False  # still down: nothing new
    alert = Alert.objects.get(kind=AlertKind.REDIS_UNREACHABLE)
    assert alert.state == AlertState.FIRING and "secret" not in alert.title and "10.0.0.9:6379" in alert.title
    assert watch.step() is True  # back: clears
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED
