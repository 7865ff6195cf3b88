"""Fixtures for the monitoring tests."""

import pytest

from controlplane.choices import DeploymentStatus

from .workers import PID


@pytest.fixture
def running(deployment):
    deployment.status = DeploymentStatus.RUNNING
    deployment.worker_url = "http://127.0.0.1:1"
    deployment.worker_pid = PID
    deployment.save()
    return deployment
