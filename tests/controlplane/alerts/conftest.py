"""Fixtures for alerting: a real SMTP server on loopback (aiosmtpd) that can be told to fail, a controllable clock,
and helpers that write the rows the evaluators read."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone

from controlplane.choices import AuditSource
from controlplane.models import InferenceRecord
from controlplane.services import audit
from tests.smtp import Mailbox, free_port


@pytest.fixture
def smtp_server(settings):
    """A running SMTP server on a free loopback port, with Django's SMTP backend pointed at it."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "", ""
    settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL, settings.EMAIL_TIMEOUT = False, False, 5
    settings.DEFAULT_FROM_EMAIL = "alerts@controlplane.test"
    settings.SITE_URL = "https://cp.example.org"
    settings.ONCALL_EMAILS = ["oncall@example.org"]
    try:
        yield mailbox
    finally:
        controller.stop()


@pytest.fixture
def no_smtp_server(settings):
    """Django's SMTP backend pointed at a loopback port where nothing listens."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL, settings.EMAIL_TIMEOUT = False, False, 5
    settings.ONCALL_EMAILS = ["oncall@example.org"]


class Clock:
    """A controllable clock: ``clock.now`` and ``clock.advance(seconds)``."""

    def __init__(self, start: datetime):
        self.now = start

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(timezone.now().replace(microsecond=0))


@pytest.fixture
def system_actor() -> audit.Actor:
    return audit.Actor(None, AuditSource.SYSTEM)


def add_requests(deployment, at: datetime, *, count: int, latency_s: float = 0.1, status_code: int = 200, **extra):
    """``count`` gateway records spread over the 10 seconds before ``at``."""
    InferenceRecord.objects.bulk_create(
        InferenceRecord(
            at=at - timedelta(seconds=10 * i / max(count, 1)),
            deployment=deployment,
            endpoint="chat",
            status_code=status_code,
            latency_s=latency_s,
            **extra,
        )
        for i in range(count)
    )
