"""`manage.py runscheduler` as real processes on one database — a SQLite file, and the PostgreSQL test database when
the suite runs on PostgreSQL: one leads and runs the jobs, the other stands by; SIGKILL the leader and the standby
takes over once the lease expires; SIGTERM stops cleanly and releases the lock."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[3]
LEASE_S = 3

# The processes read and write committed rows: the PostgreSQL variant needs the test database outside a transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Database:
    """The test's own connection (DB-API, autocommit) to the database the processes share."""

    def __init__(self, url: str, connect, placeholder: str):
        self.url, self._connect, self.p = url, connect, placeholder

    def query(self, sql: str, *params):
        with self._connect() as db:
            cursor = db.execute(sql.replace("?", self.p), params)
            return cursor.fetchall() if cursor.description else []

    def lease(self) -> tuple[str, datetime | None, datetime | None]:
        rows = self.query("SELECT owner, acquired_at, expires_at FROM controlplane_schedulerlease")
        return tuple(self._time(v) if i else v for i, v in enumerate(rows[0])) if rows else ("", None, None)

    def request_run(self, job: str) -> None:
        self.query(
            "INSERT INTO controlplane_jobrunrequest (job, requested_at, claimed_by) VALUES (?, ?, '')",
            job,
            datetime.now(UTC).isoformat(),
        )

    def runs(self) -> list[tuple[str, str, str]]:
        return self.query("SELECT job, outcome, scheduler_id FROM controlplane_jobrun ORDER BY id")

    @staticmethod
    def _time(value):
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _sqlite_file(tmp_path) -> Database:
    path = tmp_path / "shared.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{path}", "VAR_DIR": str(tmp_path)}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True
    )

    def connect():
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        return _Closing(db)

    return Database(env["DATABASE_URL"], connect, "?")


def _postgres() -> Database:
    import psycopg

    # The suite's DATABASE_URL, pointed at the test database pytest-django created from it.
    url = urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{connection.settings_dict['NAME']}").geturl()

    def connect():
        return _Closing(psycopg.connect(url, autocommit=True))

    return Database(url, connect, "%s")


class _Closing:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, *exc):
        self.db.close()


@pytest.fixture(params=["sqlite-file", "postgresql"])
def database(request, tmp_path):
    if request.param == "postgresql":
        if connection.vendor != "postgresql":
            pytest.skip("the suite runs on SQLite (set DATABASE_URL to PostgreSQL to run this)")
        return _postgres()
    return _sqlite_file(tmp_path)


@pytest.fixture
def start(database, tmp_path):
    processes: list[subprocess.Popen] = []

    def launch(name: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        env = {
            **os.environ,
            "DATABASE_URL": database.url,
            "VAR_DIR": str(tmp_path),
            "SECRET_KEY": django_settings.SECRET_KEY,
            "SCHEDULER_LEASE_S": str(LEASE_S),
            "SCHEDULER_RENEW_S": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runscheduler"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        process.log = tmp_path / f"{name}.log"
        processes.append(process)
        return process

    yield launch
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def owner_pid(owner: str) -> int | None:
    return int(owner.split(":")[2]) if owner else None


def run_now_and_wait(database: Database, job: str) -> tuple[str, str, str]:
    before = len(database.runs())
    database.request_run(job)
    finished = lambda: [run for run in database.runs()[before:] if run[1] != "running"]  # noqa: E731
    return wait_for(finished, what=f"a finished run of {job}")[0]


def test_two_schedulers_elect_one_leader_fail_over_when_it_dies_and_release_the_lock_on_sigterm(database, start):
    first, second = start("first"), start("second")
    leader_owner = wait_for(lambda: database.lease()[0], what="a leader")
    leader, standby = (first, second) if owner_pid(leader_owner) == first.pid else (second, first)
    assert owner_pid(leader_owner) == leader.pid
    wait_for(lambda: "stands by" in standby.log.read_text(), what="the standby to try the lock")

    for _ in range(3):
        job, outcome, runner = run_now_and_wait(database, "heartbeat")
        assert (job, outcome, runner) == ("heartbeat", "success", leader_owner)
    assert {runner for _, _, runner in database.runs()} == {leader_owner}, "only the leader runs jobs"

    _, _, leader_expires = database.lease()
    leader.send_signal(signal.SIGKILL)
    leader.wait(30)
    new_owner = wait_for(lambda: (o := database.lease()[0]) != leader_owner and o, what="the standby to take over")
    assert owner_pid(new_owner) == standby.pid
    _, taken_at, _ = database.lease()
    assert taken_at >= leader_expires, "the standby waited for the dead leader's lease to expire"
    assert (taken_at - leader_expires).total_seconds() < 2 * LEASE_S, "and tried again while it waited"
    assert run_now_and_wait(database, "heartbeat")[2] == new_owner

    standby.send_signal(signal.SIGTERM)
    assert standby.wait(60) == 0
    assert database.lease()[0] == "", "a clean stop releases the lock"
    assert "lock released" in standby.log.read_text() or "released the lock" in standby.log.read_text()
