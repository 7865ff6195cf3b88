"""Scheduled jobs against a real worker: drift checks catch an injected decay (router weights that starve the
best experts) on the first scheduled run and mail it, an unchanged deployment does not fire; idle sessions are
expired and their memory freed."""

from __future__ import annotations

import time

import pytest

from .serve import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def plane(plane_with_mail):
    return plane_with_mail


def run_job(api, name: str) -> dict:
    """Run a job now through the API and wait for its run to finish; returns the run."""
    before = {r["id"] for r in api.get(f"/api/v1/job-runs/?job={name}").json()["results"]}
    assert api.post(f"/api/v1/jobs/{name}/run/").status_code in (200, 202)

    def finished():
        runs = [r for r in api.get(f"/api/v1/job-runs/?job={name}").json()["results"] if r["id"] not in before]
        return runs and runs[0]["outcome"] not in ("running",) and runs[0]

    return wait_for(finished, timeout=300, what=f"the {name} job")


def test_an_injected_decay_is_caught_by_the_first_scheduled_check_and_mailed(plane, mailbox):
    with plane.api() as api:
        deployment = api.get("/api/v1/deployments/").json()["results"][0]
        run = run_job(api, "drift_checks")
        assert run["outcome"] == "success", run
        first = api.get(f"/api/v1/drift-checks/?deployment={deployment['id']}&kind=quality").json()["results"][0]
        assert first["verdict"] == "ok", first["reason"]
        starve = [0, 0, 0, 0, 0, 0, 1, 1]
        revision = api.patch(
            f"/api/v1/deployments/{deployment['id']}/", json={"config": {"router_weights": starve}}
        ).json()["revision"]
        wait_for(
            lambda: api.get(f"/api/v1/deployments/{deployment['id']}/").json()["applied_revision"] == revision,
            what="the weights to reach the worker",
        )
        started = time.perf_counter()
        run = run_job(api, "drift_checks")
        caught = api.get(f"/api/v1/drift-checks/?deployment={deployment['id']}&kind=quality").json()["results"][0]
        assert caught["verdict"] == "drift" and caught["revision"] == revision, caught["reason"]
        print(
            f"\nFIGURE drift: the injected decay was caught on the first scheduled check after it "
            f"({time.perf_counter() - started:.1f} s): {caught['reason']}"
        )
        wait_for(
            lambda: any("drift" in (m["Subject"] or "").lower() for m in mailbox.messages),
            timeout=120,
            what="the drift e-mail",
        )
        alerts = api.get("/api/v1/alerts/").json()["results"]
        assert any(a["state"] == "firing" and "Quality" in a["title"] for a in alerts)


def test_idle_sessions_are_expired_and_their_memory_freed(plane):
    with plane.api() as api:
        deployment = api.get("/api/v1/deployments/").json()["results"][0]
        revision = api.patch(
            f"/api/v1/deployments/{deployment['id']}/", json={"config": {"session_timeout_s": 10}}
        ).json()["revision"]
        wait_for(
            lambda: api.get(f"/api/v1/deployments/{deployment['id']}/").json()["applied_revision"] == revision,
            what="the timeout to reach the worker",
        )
        headers = {"Authorization": f"Bearer {plane.token}"}
        import httpx

        for i in range(5):
            response = httpx.post(
                plane.url + "/v1/chat/completions",
                headers=headers,
                timeout=120,
                json={
                    "model": "demo",
                    "messages": [{"role": "user", "content": "Return the value"}],
                    "max_tokens": 8,
                    "session_id": f"idle-{i}",
                },
            )
            assert response.status_code == 200
        sessions = api.get("/api/v1/sessions/").json()["results"]
        assert {s["id"] for s in sessions} >= {f"idle-{i}" for i in range(5)}
        kv_before = sum(s["kv_cache_bytes"] for s in sessions)
        wait_for(
            lambda: min(s["idle_s"] for s in api.get("/api/v1/sessions/").json()["results"]) > 10.5,
            timeout=60,
            what="the sessions to be idle past their timeout",
        )
        run = run_job(api, "expire_sessions")
        assert run["outcome"] == "success", run
        assert run["result"]["expired"] >= 5 and run["result"]["freed_bytes"] >= kv_before > 0, run["result"]
        assert not [s for s in api.get("/api/v1/sessions/").json()["results"] if s["id"].startswith("idle-")]
