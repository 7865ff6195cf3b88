"""Session cleanup's bookkeeping: every running worker is asked with its deployment's timeout; what each freed, or
that it did not answer, is recorded per deployment. (The end-to-end run against a real inference worker is added
when the worker lands.)"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controlplane.choices import JobOutcome, WorkerReply
from controlplane.jobs import runs as jobruns
from controlplane.jobs import tasks
from controlplane.models import Deployment
from controlplane.services import deployments
from controlplane.workers.client import worker_secret

pytestmark = pytest.mark.django_db


class Worker(BaseHTTPRequestHandler):
    """Answers the control call as a worker would; under /broken it fails with 500."""

    calls: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Worker.calls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        status, answer = (500, {"error": "engine crashed"}) if self.path.startswith("/broken") else (200, {})
        if status == 200:
            answer = {"expired": 3, "freed_bytes": 3 * 2**20}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def worker():
    Worker.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Worker)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def nothing_listening() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def fleet(actor, deployment, model_version, cpu_node, worker):
    """Four deployments: one whose worker answers, one whose worker is gone, one whose worker fails, one stopped."""
    deployments.update_deployment(actor, deployment, config={"session_timeout_s": 120})
    urls = {"demo-cpu": worker, "gone": nothing_listening(), "failing": f"{worker}/broken", "stopped": ""}
    for name, url in urls.items():
        if name != "demo-cpu":
            deployments.create_deployment(actor, name=name, model_version=model_version, node=cpu_node)
        Deployment.objects.filter(name=name).update(worker_url=url)
    return {d.name: d for d in Deployment.objects.all()}


def test_every_running_worker_is_asked_with_its_deployments_timeout_and_each_answer_is_recorded(fleet):
    result = tasks.expire_sessions()
    assert result["deployments"]["demo-cpu"] == {
        "status": WorkerReply.OK,
        "idle_s": 120,
        "expired": 3,
        "freed_bytes": 3 * 2**20,
    }
    gone = result["deployments"]["gone"]
    assert gone["status"] == WorkerReply.UNAVAILABLE and gone["idle_s"] == 600 and "cannot be reached" in gone["error"]
    failing = result["deployments"]["failing"]
    assert failing["status"] == WorkerReply.ERROR and "engine crashed" in failing["error"]
    assert "stopped" not in result["deployments"]
    assert {k: result[k] for k in ("expired", "freed_bytes", "workers", "unavailable", "errors")} == {
        "expired": 3,
        "freed_bytes": 3 * 2**20,
        "workers": 3,
        "unavailable": 1,
        "errors": 1,
    }


def test_the_worker_is_called_with_the_deployments_control_token(fleet):
    tasks.expire_sessions()
    call = next(c for c in Worker.calls if c["path"] == "/control/sessions/expire")
    assert call["body"] == {"idle_s": 120}
    assert call["auth"] == f"Bearer {worker_secret(fleet['demo-cpu'].pk, 'control')}"


def test_a_worker_that_does_not_answer_does_not_fail_the_run(fleet, clock):
    run = jobruns.execute("expire_sessions", owner="scheduler:a", clock=clock)
    assert run.outcome == JobOutcome.SUCCESS
    assert run.result["unavailable"] == 1 and run.result["expired"] == 3
