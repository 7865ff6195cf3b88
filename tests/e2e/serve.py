"""Running the real control plane (``manage.py serve``: uvicorn, supervisor, a real worker) for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float = 120.0, interval: float = 0.2, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # the server may not be up yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")


@dataclass
class ControlPlane:
    """One ``manage.py serve`` process with its own database and var directory."""

    var_dir: Path
    port: int = field(default_factory=free_port)
    env: dict = field(default_factory=dict)
    process: subprocess.Popen | None = None
    token: str = ""
    name: str = field(default_factory=lambda: f"e2e_{os.getpid()}_{time.monotonic_ns() % 10**9}")
    database_url: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict:
        """The environment of this control plane: its own database (SQLite in its var directory, or its own
        PostgreSQL database when the suite runs on PostgreSQL) and its own Redis prefixes, so that control planes
        started by different tests never see each other's state."""
        env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        env["CACHE_KEY_PREFIX"] = env["CHANNELS_PREFIX"] = self.name
        env.update(
            {
                "VAR_DIR": str(self.var_dir),
                "SECRET_KEY": "e2e-" + "k" * 60,
                "ADMIN_PASSWORD": "e2e-admin-password-1",
                "WORKER_HEALTH_INTERVAL_S": "0.5",
                "WORKER_BACKOFF_BASE_S": "0.2",
                "GATEWAY_ROUTE_CACHE_S": "0.2",
                "GATEWAY_TOKEN_CACHE_S": "0",
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env)
        return env

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def prepare(self) -> None:
        server = os.environ.get("DATABASE_URL", "")
        if server.startswith(("postgres://", "postgresql://")) and not self.database_url:
            self.database_url = _create_database(server, self.name)
        self.manage("migrate", "--noinput", "-v0")
        self.manage("ensure_admin")
        self.token = self.manage("create_api_token", "admin", "--name", "e2e").strip().splitlines()[-1]

    def start(self, *, wait_ready: bool = True) -> None:
        log = (self.var_dir / "serve.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait_ready:
            wait_for(lambda: httpx.get(self.url + "/readyz", timeout=5).status_code == 200, what="/readyz")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        os.killpg(self.process.pid, sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(10)

    def drop(self) -> None:
        """Remove this control plane's own PostgreSQL database and its Redis keys (after it has stopped)."""
        if self.database_url:
            _drop_database(os.environ["DATABASE_URL"], self.name)
            self.database_url = ""
        redis_url = self.environment().get("REDIS_URL")
        if redis_url:
            import redis

            client = redis.Redis.from_url(redis_url)
            try:
                keys = list(client.scan_iter(match=f"{self.name}*", count=1000))
                if keys:
                    client.delete(*keys)
            finally:
                client.close()

    def log(self) -> str:
        return (self.var_dir / "serve.log").read_text(errors="replace")

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)


def _admin_connection(server_url: str):
    base = server_url.rsplit("/", 1)[0]
    return psycopg.connect(base + "/postgres", autocommit=True)


def _create_database(server_url: str, name: str) -> str:
    with _admin_connection(server_url) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def _drop_database(server_url: str, name: str) -> None:
    with _admin_connection(server_url) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class Load:
    """Steady traffic through the gateway: ``clients`` threads sending completions back to back. Every answer is
    kept as (time sent, status code); 0 stands for no answer at all (a connection error)."""

    def __init__(self, plane: ControlPlane, clients: int = 4, body: dict | None = None) -> None:
        self.plane, self.results, self.stop_event = plane, [], threading.Event()
        self.body = body or {"model": "demo", "prompt": "If", "max_tokens": 8, "temperature": 0.9}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.plane.token}"}
        with httpx.Client(timeout=120) as http:
            while not self.stop_event.is_set():
                sent = time.monotonic()
                try:
                    code = http.post(self.plane.url + "/v1/completions", json=self.body, headers=headers).status_code
                except httpx.HTTPError:
                    code = 0
                with self.lock:
                    self.results.append((sent, code))

    @property
    def statuses(self) -> list[int]:
        with self.lock:
            return [code for _, code in self.results]

    def since(self, started: float) -> list[int]:
        """The status codes of the requests sent at or after ``started`` (a ``time.monotonic()`` value)."""
        with self.lock:
            return [code for sent, code in self.results if sent >= started]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        wait_for(lambda: self.statuses.count(200) >= 4, what="the load to be served")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(120)
