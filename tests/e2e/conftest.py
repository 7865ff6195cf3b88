"""Fixtures for end-to-end tests: an SMTP server the control plane mails to, and a running control plane."""

import pytest
from aiosmtpd.controller import Controller

from tests.smtp import Mailbox, free_port

from .serve import ControlPlane


@pytest.fixture
def mailbox():
    """A real SMTP server on loopback; ``mailbox.messages`` are what it received."""
    box = Mailbox()
    box.port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture
def plane_with_mail(tmp_path, mailbox):
    """``manage.py serve`` with the scheduler in its process and e-mail going to ``mailbox``."""
    plane = ControlPlane(
        tmp_path,
        env={
            "SCHEDULER_IN_PROCESS": "1",
            "EMAIL_URL": f"smtp://127.0.0.1:{mailbox.port}",
            "ONCALL_EMAILS": "oncall@example.org",
            "DEFAULT_FROM_EMAIL": "llm@example.org",
        },
    )
    plane.prepare()
    plane.start()
    yield plane
    plane.stop()
