"""The supervisor over a WorkerPool of fake processes (tests/controlplane/workers/fakes.py): no real process."""

from __future__ import annotations

import pytest

from controlplane.services.deployments import deployment_changed
from controlplane.workers import launch
from controlplane.workers.pool import PoolSettings, WorkerPool
from controlplane.workers.supervisor import Supervisor

from .fakes import Clock, FakeLauncher, ports


class _UrlClient:
    """Stands in for WorkerClient: the fake control API is found by the worker's URL."""

    @staticmethod
    def for_deployment(deployment_id: int, url: str) -> str:
        return url


@pytest.fixture
def fake_launcher(monkeypatch) -> FakeLauncher:
    fake = FakeLauncher()
    monkeypatch.setattr(launch, "WorkerClient", _UrlClient)
    monkeypatch.setattr(launch, "ClientControl", fake.control)
    return fake


@pytest.fixture
def fake_clock() -> Clock:
    return Clock()


@pytest.fixture
def supervisor(fake_launcher, fake_clock, cpu_node, tmp_path):
    settings = PoolSettings(retire_grace_s=6, drain_timeout_s=30, health_interval_s=2)
    pool = WorkerPool(fake_launcher, settings=settings, log_dir=tmp_path, clock=fake_clock, port_for=ports())
    supervisor = Supervisor(cpu_node, clock=fake_clock, pool=pool)
    yield supervisor
    deployment_changed.disconnect(dispatch_uid="supervisor")
