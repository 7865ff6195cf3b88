"""Fixtures for the scheduler's tests: a controllable clock, a job registry of each test's own (the real jobs plus
those the test adds), and a stand-in for the alerts service that records what it is told."""

from __future__ import annotations

import threading

import pytest

from controlplane.alerts import service as alerts
from controlplane.extensions import Registry
from controlplane.jobs import registry as jobs
from tests.controlplane.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def own_registry(monkeypatch) -> Registry:
    """Each test gets a copy of the job registry, so the jobs it adds or replaces go with it."""
    table = Registry[jobs.Job]("job", check=jobs.check_job)
    for job in jobs.JOBS:
        table.register(job)
    monkeypatch.setattr(jobs, "JOBS", table)
    return table


@pytest.fixture
def signals(monkeypatch) -> list[dict]:
    """What the scheduler signals to the alerts (``alerts.service.signal``, replaced by a recorder)."""
    received: list[dict] = []

    def signal(kind, deployment, key, firing, title="", summary="", values=None, series=None, **kwargs):
        received.append({"kind": kind, "deployment": deployment, "key": key, "firing": firing, "title": title})

    monkeypatch.setattr(alerts, "signal", signal)
    return received


class Gate:
    """A job that waits at a gate until the test opens it, so a test can hold a run "in progress"."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self) -> dict:
        self.calls += 1
        self.entered.set()
        if not self.release.wait(60):
            raise TimeoutError("the test never opened the gate")
        return {"calls": self.calls}


def add_job(monkeypatch, job: jobs.Job) -> jobs.Job:
    """Register ``job`` in the test's registry (in place of a registered job of the same name)."""
    jobs.JOBS.unregister(job.name)
    return jobs.JOBS.register(job)


def boom() -> dict:
    raise RuntimeError("the disk is on fire")


@pytest.fixture
def only_test_jobs(monkeypatch):
    """Schedule only the jobs a test adds (the real ones stay out of the way)."""
    monkeypatch.setattr(jobs, "JOBS", Registry[jobs.Job]("job", check=jobs.check_job))
    return jobs.JOBS
