"""The gateway's database calls survive a connection the server dropped, and no request record is lost."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.utils import timezone

from controlplane.gateway import recorder
from controlplane.gateway.db import reconnecting
from controlplane.models import InferenceRecord


def test_a_call_that_finds_the_connection_gone_runs_again_once_on_a_new_one(monkeypatch):
    closed, calls = [], []
    monkeypatch.setattr("controlplane.gateway.db.connection.close", lambda: closed.append(True))

    @reconnecting
    def query() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("terminating connection due to administrator command")
        return "rows"

    assert query() == "rows" and len(calls) == 2 and closed == [True]


def test_a_second_failure_is_not_hidden(monkeypatch):
    monkeypatch.setattr("controlplane.gateway.db.connection.close", lambda: None)

    @reconnecting
    def query() -> None:
        raise OperationalError("the server is down")

    with pytest.raises(OperationalError):
        query()


@pytest.mark.django_db
def test_records_that_could_not_be_written_are_kept_for_the_next_try(monkeypatch, deployment):
    service = recorder.Recorder()
    for _ in range(3):
        service.add(
            InferenceRecord(
                deployment=deployment, status_code=200, endpoint="completions", at=timezone.now(), latency_s=0.1
            )
        )
    real = InferenceRecord.objects.bulk_create

    def failing(rows, *args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(InferenceRecord.objects, "bulk_create", failing)
    monkeypatch.setattr("controlplane.gateway.recorder.connection.close", lambda: None)  # the test's transaction
    assert service.step() is False and len(service.buffer) == 3
    monkeypatch.setattr(InferenceRecord.objects, "bulk_create", real)
    service.step()
    assert InferenceRecord.objects.count() == 3 and not service.buffer
