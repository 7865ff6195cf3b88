"""The leak detector's whole path on a real worker: a leak injected into the demo worker of a real ``serve``
(fault injection, docs/faults.md) is detected, mailed as a ``leak`` alert, and, with ``leak_action: restart``, the
worker is drained and restarted (a new pid). The detector runs with a short window here (``METRICS_LEAK_CONFIG``) and
the leak is fast, so the test stays bounded; ``bench/bench_leak_e2e.py`` measures the same path with the defaults."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
import pytest

from .serve import ControlPlane, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SECRET_KEY = "e2e-" + "k" * 60  # what ControlPlane.environment() gives serve
# A short window: 60 s of 2 s blocks, checked every 4 s, confirmed twice. Jumps of the allocator are left alone.
FAST_LEAK_CONFIG = {
    "block_s": 2,
    "eval_every_s": 4,
    "windows_s": [60],
    "min_segment_s": 10,
    "max_segment_s": 30,
    "min_growth_bytes": 4 * 2**20,
    "min_jump_bytes": 256 * 2**20,
}


def control_headers(deployment_id: int, secret_key: str = SECRET_KEY) -> dict[str, str]:
    """The worker's control token, derived as the control plane derives it (``workers.client.worker_secret``)."""
    token = hmac.new(secret_key.encode(), f"lcp-worker:control:{deployment_id}".encode(), hashlib.sha256).hexdigest()
    return {"Authorization": f"Bearer {token}"}


def serving(api: httpx.Client) -> dict:
    """The first deployment once its worker serves."""

    def ready():
        deployment = api.get("/api/v1/deployments/").json()["results"][0]
        return deployment["status"] == "running" and deployment["worker_url"] and deployment

    return wait_for(ready, timeout=300, what="the demo worker to serve")


def set_config(api: httpx.Client, deployment_id: int, config: dict) -> None:
    url = f"/api/v1/deployments/{deployment_id}/"
    revision = api.patch(url, json={"config": config}).json()["revision"]
    wait_for(lambda: api.get(url).json()["applied_revision"] == revision, what=f"config {config} to apply")


def inject(deployment: dict, **faults: float) -> dict:
    response = httpx.post(
        deployment["worker_url"] + "/control/faults", headers=control_headers(deployment["id"]), json=faults, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def leak_to_alert_and_restart(plane: ControlPlane, mailbox, leak_mb_per_min: float, timeout: float) -> dict:
    """Inject a leak into the worker of ``plane``'s demo deployment (set to restart on a leak); returns the seconds
    from the start of the leak to the alert e-mail and to the new worker serving, and both pids."""
    with plane.api() as api:
        deployment = serving(api)
        set_config(api, deployment["id"], {"leak_action": "restart"})
        deployment = serving(api)
        old_pid = deployment["worker_pid"]
        url = f"/api/v1/deployments/{deployment['id']}/"
        started = time.monotonic()
        assert inject(deployment, leak_mb_per_min=leak_mb_per_min)["leak_mb_per_min"] == leak_mb_per_min

        def mailed():
            return any("leak" in (m["Subject"] or "").lower() for m in mailbox.messages)

        wait_for(mailed, timeout=timeout, interval=1, what="the leak alert e-mail")
        to_mail = time.monotonic() - started

        def restarted():
            now = api.get(url).json()
            return now["worker_pid"] not in (old_pid, None) and now["status"] == "running" and now

        after = wait_for(restarted, timeout=timeout, interval=1, what="the worker to be restarted")
        to_restart = time.monotonic() - started
        events = api.get(f"/api/v1/worker-events/?deployment={deployment['id']}").json()["results"]
        subject = next(m["Subject"] for m in mailbox.messages if "leak" in (m["Subject"] or "").lower())
    return {
        "to_mail_s": to_mail,
        "to_restart_s": to_restart,
        "old_pid": old_pid,
        "new_pid": after["worker_pid"],
        "subject": subject,
        "events": [e["kind"] for e in events],
    }


def test_a_leak_injected_into_a_real_worker_is_mailed_and_the_worker_restarted(make_plane, mailbox):
    plane = make_plane(
        SCHEDULER_IN_PROCESS="1",
        EMAIL_URL=f"smtp://127.0.0.1:{mailbox.port}",
        ONCALL_EMAILS="oncall@example.org",
        DEFAULT_FROM_EMAIL="llm@example.org",
        WORKER_FAULT_INJECTION="1",
        METRICS_LEAK_CONFIG=json.dumps(FAST_LEAK_CONFIG),
    )
    try:
        result = leak_to_alert_and_restart(plane, mailbox, leak_mb_per_min=60, timeout=420)
    finally:
        plane.stop()
    assert result["new_pid"] != result["old_pid"]
    assert "leak_restart" in result["events"], result["events"]
    print(
        f"\nFIGURE leak (60 MB/min, 60 s window): alert e-mail {result['to_mail_s']:.0f} s, worker restarted "
        f"{result['to_restart_s']:.0f} s after the leak started (pid {result['old_pid']} -> {result['new_pid']}); "
        f"subject: {result['subject']}"
    )


def test_the_faults_route_is_absent_from_a_worker_started_without_fault_injection(make_plane):
    plane = make_plane()
    try:
        with plane.api() as api:
            deployment = serving(api)
            response = httpx.post(
                deployment["worker_url"] + "/control/faults",
                headers=control_headers(deployment["id"]),
                json={"fail_percent": 100},
                timeout=30,
            )
            assert response.status_code == 404, response.text
    finally:
        plane.stop()
