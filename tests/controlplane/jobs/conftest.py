"""Fixtures for the scheduler's tests: a controllable clock, jobs written for the tests, and a stand-in for the
alerts service that records what it is told."""

from __future__ import annotations

import importlib.machinery
import sys
import threading
import types

import pytest

from controlplane.jobs import registry as jobs
from controlplane.services import alert_signal
from tests.controlplane.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def signals(monkeypatch) -> list[dict]:
    """What the scheduler signals to ``controlplane.alerts.service.signal`` (a stand-in module records it)."""
    received: list[dict] = []

    def signal(kind, deployment, key, firing, title, summary, values, series=None):
        received.append({"kind": kind, "deployment": deployment, "key": key, "firing": firing, "title": title})

    module = types.ModuleType(alert_signal.SERVICE)
    module.__spec__ = importlib.machinery.ModuleSpec(alert_signal.SERVICE, None)
    module.signal = signal
    monkeypatch.setitem(sys.modules, alert_signal.SERVICE, module)
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
    monkeypatch.setitem(jobs.JOBS, job.name, job)
    return job


def boom() -> dict:
    raise RuntimeError("the disk is on fire")


@pytest.fixture
def only_test_jobs(monkeypatch):
    """Schedule only the jobs a test adds (the real table stays out of the way)."""
    monkeypatch.setattr(jobs, "JOBS", {})
    return jobs.JOBS
