"""Fixtures for end-to-end tests: running control planes (each with its own var directory, database and Redis
prefixes), and an SMTP server they mail to."""

import pytest
from aiosmtpd.controller import Controller

from tests.smtp import Mailbox, free_port

from .serve import ControlPlane, wait_for


@pytest.fixture
def mailbox():
    """A real SMTP server on loopback; ``mailbox.messages`` are what it received."""
    box = Mailbox()
    box.port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture(scope="module")
def make_plane(tmp_path_factory):
    """``make_plane(start=True, **env)``: a prepared control plane; every plane made here is stopped and its
    database dropped at the end of the module."""
    planes = []

    def make(start: bool = True, **env) -> ControlPlane:
        plane = ControlPlane(tmp_path_factory.mktemp("plane"), env=env)
        planes.append(plane)
        plane.prepare()
        if start:
            plane.start()
        return plane

    yield make
    for plane in planes:
        plane.stop()
        plane.drop()


@pytest.fixture
def plane_with_mail(make_plane, mailbox):
    """``manage.py serve`` with the scheduler in its process and e-mail going to ``mailbox``."""
    plane = make_plane(
        SCHEDULER_IN_PROCESS="1",
        EMAIL_URL=f"smtp://127.0.0.1:{mailbox.port}",
        ONCALL_EMAILS="oncall@example.org",
        DEFAULT_FROM_EMAIL="llm@example.org",
    )
    yield plane
    plane.stop()


@pytest.fixture(scope="module")
def running_plane(make_plane):
    """A control plane whose demo deployment is running."""
    plane = make_plane()
    with plane.api() as api:
        wait_for(
            lambda: [d["status"] for d in api.get("/api/v1/deployments/").json()["results"]] == ["running"],
            what="the demo deployment to be running",
        )
    return plane
