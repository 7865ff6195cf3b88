"""Faults under load on a real ``serve`` with the demo worker: what fails, and how long until it serves again.

Each test runs steady load through the gateway (a few clients sending chat completions back to back), injects one
fault, and prints ``FIGURE fault …``: requests failed against requests in flight when the fault struck, and the time
until requests succeed again. docs/faults.md collects the figures.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller

from tests.smtp import Mailbox, free_port

from .serve import ControlPlane, wait_for
from .test_leak_e2e import inject, serving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@dataclass
class Result:
    start: float
    end: float
    status: int  # 0: no HTTP answer (connection refused or reset)
    detail: str = ""


@dataclass
class Load:
    """``clients`` threads sending requests back to back through the gateway until stopped."""

    plane: ControlPlane
    clients: int = 3
    max_tokens: int = 16
    results: list[Result] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self, index: int) -> None:
        headers = {"Authorization": f"Bearer {self.plane.token}"}
        body = {
            "model": "demo",
            "messages": [{"role": "user", "content": f"Return the value {index}"}],
            "max_tokens": self.max_tokens,
        }
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    response = client.post(self.plane.url + "/v1/chat/completions", headers=headers, json=body)
                    status, detail = response.status_code, "" if response.status_code == 200 else response.text[:300]
                except httpx.HTTPError as exc:
                    status, detail = 0, f"{type(exc).__name__}: {exc}"
                with self.lock:
                    self.results.append(Result(start, time.monotonic(), status, detail))
                if status != 200:
                    time.sleep(0.2)  # a refusal comes back at once: back off a little, as a client would

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(180)

    def snapshot(self) -> list[Result]:
        with self.lock:
            return list(self.results)

    def succeeded_after(self, moment: float) -> float | None:
        """When the first request started after ``moment`` succeeded (None: none yet)."""
        ends = [r.end for r in self.snapshot() if r.start > moment and r.status == 200]
        return min(ends) if ends else None

    def in_flight_at(self, moment: float) -> list[Result]:
        return [r for r in self.snapshot() if r.start <= moment < r.end]

    def failed(self) -> list[Result]:
        return [r for r in self.snapshot() if r.status != 200]


def wait_recovered(load: Load, moment: float, timeout: float = 300) -> float:
    """Seconds from ``moment`` until a request sent after it succeeded."""
    return wait_for(
        lambda: load.succeeded_after(moment), timeout=timeout, interval=0.2, what="a request to succeed"
    ) - (moment)


def figure(name: str, load: Load, moment: float, recovered_s: float | None, note: str = "") -> None:
    results = load.snapshot()
    failed = [r for r in results if r.status != 200]
    in_flight = load.in_flight_at(moment)
    statuses = Counter(r.status for r in failed)
    recovery = "n/a" if recovered_s is None else f"{recovered_s:.1f} s"
    held = {id(r) for r in in_flight}
    note = f"; {note}" if note else ""
    print(
        f"\nFIGURE fault {name}: {len(failed)} of {len(results)} requests failed ({dict(statuses)}): "
        f"{sum(r.status != 200 for r in in_flight)} of {len(in_flight)} in flight at the fault, "
        f"{sum(id(r) not in held for r in failed)} sent afterwards; recovered in {recovery}{note}"
    )


def usage(api: httpx.Client) -> dict:
    rows = api.get("/api/v1/usage/?group_by=deployment").json()["results"]
    return {"requests": sum(r["requests"] for r in rows), "errors": sum(r["errors"] for r in rows)}


# --- (a) a worker killed under load ----------------------------------------------------------------------------------
def test_a_worker_killed_under_load_fails_only_what_it_held_and_the_records_match(make_plane):
    plane = make_plane()
    try:
        with plane.api() as api:
            deployment = serving(api)
            before = usage(api)
            with Load(plane) as load:
                wait_for(lambda: load.succeeded_after(0), what="load to flow")
                time.sleep(2)
                killed_at = time.monotonic()
                os.kill(deployment["worker_pid"], signal.SIGKILL)
                recovered = wait_recovered(load, killed_at)
                time.sleep(2)
            in_flight = load.in_flight_at(killed_at)
            failed = load.failed()
            figure("worker SIGKILL", load, killed_at, recovered)
            held = {id(r) for r in in_flight}
            later = [r for r in failed if id(r) not in held]
            # Requests sent while the worker restarts wait for it (GATEWAY_WORKER_WAIT_S): only those it held fail.
            assert later == [], [(r.status, r.detail) for r in later]
            assert all(r.status in (0, 500, 502, 503) for r in failed if id(r) in held)
            results = load.snapshot()
            ok = sum(r.status == 200 for r in results)
            answered = sum(r.status != 0 for r in results)

            def recorded():
                now = usage(api)
                return now["requests"] - now["errors"] - (before["requests"] - before["errors"]) >= ok and now

            after = wait_for(recorded, timeout=30, what="the records of the successful requests")
            successes = after["requests"] - after["errors"] - (before["requests"] - before["errors"])
            print(
                f"FIGURE records: clients saw {ok} successes and {answered} answers; the gateway recorded "
                f"{after['requests'] - before['requests']} requests, {successes} successful"
            )
            assert successes == ok
            assert after["requests"] - before["requests"] <= answered
    finally:
        plane.stop()


# --- (b) Redis killed and restarted in scale-out mode ----------------------------------------------------------------
def _redis(port: int, tmp_path) -> subprocess.Popen:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: _redis_up(port), timeout=30, what="redis-server to answer")
    return process


def _redis_up(port: int) -> bool:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs the redis-server binary (apt install redis-server)"
)
def test_redis_killed_under_load_gives_no_5xx_and_recovers_by_itself(tmp_path):
    port = free_port()
    redis_process = _redis(port, tmp_path)
    # Not from make_plane: this plane's Redis keys are dropped here, while its private Redis still runs.
    plane = ControlPlane(tmp_path / "plane", env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    plane.var_dir.mkdir()
    try:
        plane.prepare()
        plane.start()
        with plane.api() as api:
            serving(api)
            with Load(plane) as load:
                wait_for(lambda: load.succeeded_after(0), what="load to flow")
                time.sleep(2)
                killed_at = time.monotonic()
                redis_process.kill()
                redis_process.wait(10)
                time.sleep(5)
                in_flight_down = len(load.snapshot())
                redis_process = _redis(port, tmp_path)
                back_at = time.monotonic()
                ready = wait_for(
                    lambda: httpx.get(plane.url + "/readyz", timeout=5).status_code == 200 and time.monotonic(),
                    timeout=120,
                    what="/readyz after Redis is back",
                )
                recovered = wait_recovered(load, back_at)
                time.sleep(2)
            figure(
                "Redis down 5 s",
                load,
                killed_at,
                recovered,
                f"/readyz ready {ready - back_at:.1f} s after Redis was back; {in_flight_down} requests by then",
            )
            server_errors = [(r.status, r.detail) for r in load.snapshot() if r.status >= 500 or r.status == 0]
            assert not server_errors, server_errors
    finally:
        plane.stop()
        if redis_process.poll() is None:
            plane.drop()
        redis_process.kill()
        redis_process.wait(10)


# --- (c) PostgreSQL connections dropped ------------------------------------------------------------------------------
@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
    reason="needs DATABASE_URL to point at PostgreSQL",
)
def test_postgres_sessions_terminated_under_load_are_reconnected_on_the_next_request(make_plane):
    plane = make_plane()
    try:
        with plane.api() as api:
            serving(api)
            with Load(plane) as load:
                wait_for(lambda: load.succeeded_after(0), what="load to flow")
                time.sleep(2)
                admin = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
                with psycopg.connect(admin, autocommit=True) as connection:
                    dropped_at = time.monotonic()
                    terminated = connection.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                        (plane.name,),
                    ).fetchone()[0]
                try:
                    recovered: float | None = wait_recovered(load, dropped_at, timeout=60)
                except AssertionError:
                    recovered = None
                time.sleep(3)
            figure("PostgreSQL sessions terminated", load, dropped_at, recovered, f"{terminated} sessions terminated")
            assert terminated >= 1
            # The REST API (Django's request cycle closes a broken connection after each request) answers at once.
            assert api.get("/api/v1/deployments/").status_code == 200
            # The gateway's own connection (asgiref's worker thread) is replaced on the next call as well.
            late = [(r.status, r.detail) for r in load.snapshot() if r.start > dropped_at + 2 and r.status != 200]
            assert recovered is not None and late == [], late
    finally:
        plane.stop()


# --- (d) SMTP down, then up ------------------------------------------------------------------------------------------
def test_an_alert_mailed_while_smtp_is_down_arrives_after_a_retry(make_plane):
    box = Mailbox()
    box.port = free_port()
    plane = make_plane(
        SCHEDULER_IN_PROCESS="1",
        EMAIL_URL=f"smtp://127.0.0.1:{box.port}",
        ONCALL_EMAILS="oncall@example.org",
        DEFAULT_FROM_EMAIL="llm@example.org",
        ALERT_RETRY_BASE_S="2",
        ALERT_MAX_ATTEMPTS="10",
        WORKER_FAULT_INJECTION="1",
    )
    controller = None
    try:
        with plane.api() as api:
            deployment = serving(api)
            rule = {
                "name": "errors",
                "kind": "error_rate",
                "parameters": {"threshold": 0.1, "window_s": 60, "min_requests": 3},
                "severity": "critical",
                "for_s": 0,
            }
            assert api.post("/api/v1/alert-rules/", json=rule).status_code == 201
            inject(deployment, fail_percent=100)
            with Load(plane, clients=2) as load:

                def attempted():
                    rows = api.get("/api/v1/notifications/").json()["results"]
                    return any(n["attempt_count"] for n in rows) and rows

                wait_for(attempted, timeout=180, interval=1, what="a failed delivery attempt")
            up_at = time.monotonic()
            controller = Controller(box, hostname="127.0.0.1", port=box.port)
            controller.start()
            wait_for(lambda: box.messages, timeout=180, interval=0.5, what="the alert e-mail after SMTP is back")
            delivered = time.monotonic() - up_at
            notifications = api.get("/api/v1/notifications/").json()["results"]
            attempts = max(int(n["attempt_count"]) for n in notifications)
            print(
                f"\nFIGURE fault SMTP down: the alert e-mail arrived {delivered:.1f} s after SMTP came back "
                f"(after {attempts} attempts; {len(load.failed())} injected request failures)"
            )
            assert any("error rate" in (m["Subject"] or "").lower() for m in box.messages), [
                m["Subject"] for m in box.messages
            ]
    finally:
        plane.stop()
        if controller is not None:
            controller.stop()


# --- (e) the control plane SIGTERMed mid-request ---------------------------------------------------------------------
def test_requests_in_flight_finish_when_the_control_plane_is_sigtermed(make_plane):
    plane = make_plane()
    try:
        with plane.api() as api:
            serving(api)
        with Load(plane, clients=3, max_tokens=48) as load:
            wait_for(lambda: load.succeeded_after(0), what="load to flow")
            time.sleep(1.5)
            term_at = time.monotonic()
            assert plane.process is not None
            plane.process.send_signal(signal.SIGTERM)  # the serve process only, as systemd or Kubernetes would
            code = plane.process.wait(90)
            time.sleep(0.5)
        held = load.in_flight_at(term_at)
        failed_held = [r for r in held if r.status != 200]
        restarted = time.monotonic()
        plane.start()
        figure(
            "control plane SIGTERM",
            load,
            term_at,
            None,
            f"exit code {code}; {len(failed_held)} of {len(held)} in flight failed; "
            f"started again and ready {time.monotonic() - restarted:.1f} s later",
        )
        assert held, "no request was in flight at the SIGTERM"
        assert not failed_held, [(r.status, r.detail) for r in failed_held]
    finally:
        plane.stop()
