"""/api/v1/jobs/ and /api/v1/job-runs/: the table, recent runs, and run-now by role, with 404 and 409."""

import pytest
from django.utils import timezone

from controlplane.choices import JobOutcome, JobTrigger, Role
from controlplane.jobs import lease
from controlplane.jobs import registry as jobs
from controlplane.jobs import runs as jobruns
from controlplane.models import AuditEvent, JobRun, JobRunRequest, JobState

from .conftest import Gate, add_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def report(monkeypatch):
    return add_job(monkeypatch, jobs.Job("report", lambda: {"rows": 7}, every_s=300, description="Counts rows."))


def test_viewers_list_the_jobs_with_their_schedule_and_last_and_next_runs(clients, report, clock):
    jobruns.execute("report", owner="scheduler:a", clock=clock)
    JobState.objects.filter(job="report").update(next_run_at=clock.advance(300))
    body = clients[Role.VIEWER].get("/api/v1/jobs/").json()
    assert [row["name"] for row in body["results"]][: len(jobs.JOBS)] == jobs.JOBS.names()
    row = next(row for row in body["results"] if row["name"] == "report")
    assert row["schedule"] == "every 300 s" and row["every_s"] == 300 and row["description"] == "Counts rows."
    assert row["last_run"]["outcome"] == JobOutcome.SUCCESS and row["last_run"]["result"] == {"rows": 7}
    assert row["next_run_at"].startswith(clock().strftime("%Y-%m-%dT%H:%M")) and row["running"] is False


def test_a_jobs_detail_has_its_recent_runs_newest_first(clients, report, clock):
    for _ in range(3):
        jobruns.execute("report", owner="scheduler:a", clock=clock)
        clock.advance(300)
    body = clients[Role.VIEWER].get("/api/v1/jobs/report/").json()
    assert len(body["recent_runs"]) == 3
    starts = [run["started_at"] for run in body["recent_runs"]]
    assert starts == sorted(starts, reverse=True)


def test_an_unknown_job_is_404_for_reading_and_running(clients):
    assert clients[Role.VIEWER].get("/api/v1/jobs/no_such_job/").status_code == 404
    assert clients[Role.OPERATOR].post("/api/v1/jobs/no_such_job/run/").status_code == 404


def test_anonymous_callers_get_401_and_viewers_cannot_run_a_job(clients, report):
    assert clients["anonymous"].get("/api/v1/jobs/").status_code == 401
    response = clients[Role.VIEWER].post("/api/v1/jobs/report/run/")
    assert response.status_code == 403 and "operator" in response.json()["detail"]
    assert not JobRun.objects.exists()


def test_an_operator_runs_a_job_inline_when_no_scheduler_runs_and_it_is_audited(clients, report, operator):
    response = clients[Role.OPERATOR].post("/api/v1/jobs/report/run/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ran" and body["run"]["result"] == {"rows": 7}
    run = JobRun.objects.get(pk=body["run"]["id"])
    assert run.trigger == JobTrigger.MANUAL and run.requested_by == operator and run.scheduler_id.startswith("inline:")
    event = AuditEvent.objects.get(action="job.run")
    assert event.object_id == "report" and event.actor_name == "operator" and event.after["run"] == run.pk


def test_with_a_scheduler_running_the_run_is_queued_for_it_and_a_second_request_is_409(clients, report):
    lease.acquire("scheduler:elsewhere", timezone.now(), 30)
    response = clients[Role.OPERATOR].post("/api/v1/jobs/report/run/", {}, format="json")
    assert response.status_code == 202
    assert response.json()["status"] == "queued" and not JobRun.objects.exists()
    assert JobRunRequest.objects.get(pk=response.json()["request"]).job == "report"
    assert clients[Role.VIEWER].get("/api/v1/jobs/report/").json()["requested"] is True
    again = clients[Role.OPERATOR].post("/api/v1/jobs/report/run/")
    assert again.status_code == 409 and "already" in again.json()["detail"]


def test_a_job_that_is_already_running_is_409(clients, monkeypatch):
    add_job(monkeypatch, jobs.Job("slow", Gate(), every_s=300))
    running = JobRun.objects.create(job="slow", started_at=timezone.now(), scheduler_id="scheduler:a")
    jobruns.claim("slow", running, "scheduler:a", timezone.now(), max_runtime_s=600)
    response = clients[Role.OPERATOR].post("/api/v1/jobs/slow/run/")
    assert response.status_code == 409 and f"run {running.pk}" in response.json()["detail"]
    assert JobRun.objects.count() == 1


def test_run_now_refuses_unknown_fields(clients, report):
    response = clients[Role.OPERATOR].post("/api/v1/jobs/report/run/", {"force": True}, format="json")
    assert response.status_code == 400 and "force" in response.json()
    assert not JobRun.objects.exists()


def test_job_runs_are_listed_and_filtered_by_job_and_outcome(clients, report, monkeypatch, clock):
    add_job(monkeypatch, jobs.Job("broken", lambda: 1 / 0, every_s=300))
    jobruns.execute("report", owner="scheduler:a", clock=clock)
    jobruns.execute("broken", owner="scheduler:a", clock=clock)
    body = clients[Role.VIEWER].get("/api/v1/job-runs/?outcome=failed").json()
    assert [run["job"] for run in body["results"]] == ["broken"]
    assert "ZeroDivisionError" in body["results"][0]["traceback"]
    assert clients[Role.VIEWER].get("/api/v1/job-runs/?job=report").json()["count"] == 1
    assert clients[Role.ADMIN].delete(f"/api/v1/job-runs/{body['results'][0]['id']}/").status_code == 405


def test_the_schema_describes_the_job_endpoints(clients):
    schema = clients[Role.VIEWER].get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in ["/api/v1/jobs/", "/api/v1/jobs/{name}/", "/api/v1/jobs/{name}/run/", "/api/v1/job-runs/"]:
        assert path in schema["paths"], path
