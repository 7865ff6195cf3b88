"""The jobs pages, run-now from the dashboard, and the banner every page shows when jobs stopped running."""

import dataclasses
import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.html import escape

from controlplane.choices import JobOutcome
from controlplane.jobs import lease
from controlplane.jobs import registry as jobs
from controlplane.jobs import runs as jobruns
from controlplane.models import JobRun, SchedulerLease

from ..conftest import page_text as text
from .conftest import add_job

pytestmark = pytest.mark.django_db


def running_scheduler(age_s: float = 0, jobs_age_s: float = 0) -> None:
    now = timezone.now()
    lease.acquire("scheduler:host:1:abc", now - timedelta(seconds=age_s), 30)
    SchedulerLease.objects.update(jobs_heartbeat_at=now - timedelta(seconds=jobs_age_s))


def test_the_jobs_page_lists_every_job_and_is_in_the_nav(as_viewer):
    running_scheduler()
    page = text(as_viewer.get("/jobs/"))
    for job in jobs.JOBS:
        assert f'href="/jobs/{job.name}/"' in page and escape(job.description) in page
    assert '<a href="/jobs/" aria-current="page">Jobs</a>' in page
    assert "Run now" not in page, "viewers get no run button"
    assert 'href="/jobs/"' in text(as_viewer.get("/deployments/"))


def test_operators_see_run_now_and_run_a_job_inline_when_no_scheduler_runs(as_operator):
    assert "Run now" in text(as_operator.get("/jobs/"))
    response = as_operator.post("/jobs/heartbeat/run/", follow=True)
    assert response.redirect_chain[-1][0] == "/jobs/heartbeat/"
    assert "ran here (no scheduler is running): success" in text(response)
    assert JobRun.objects.get(job="heartbeat").outcome == JobOutcome.SUCCESS


def test_a_run_now_that_conflicts_shows_the_reason(as_operator):
    running_scheduler()
    as_operator.post("/jobs/heartbeat/run/")
    response = as_operator.post("/jobs/heartbeat/run/", follow=True)
    assert "already been asked to run" in text(response)


def test_viewers_cannot_run_a_job_from_the_dashboard(as_viewer):
    assert as_viewer.post("/jobs/heartbeat/run/").status_code == 403
    assert not JobRun.objects.exists()


def test_a_jobs_page_charts_its_runs_and_the_numbers_its_results_carry(as_viewer, clock, monkeypatch):
    answers = iter([{"expired": 2, "freed_bytes": 2048}, {"expired": 5, "freed_bytes": 5 * 2**20}])
    add_job(monkeypatch, dataclasses.replace(jobs.JOBS["expire_sessions"], func=lambda: next(answers)))
    for _ in range(2):
        jobruns.execute("expire_sessions", owner="scheduler:a", clock=clock)
        clock.advance(60)
    response = as_viewer.get("/jobs/expire_sessions/")
    chart = json.loads(
        re.search(r'<script id="job-chart" type="application/json">(.*?)</script>', response.content.decode(), re.S)[1]
    )
    assert chart["outcome"] == ["success", "success"] and len(chart["t"]) == 2
    assert chart["series"] == [
        {"label": "Sessions expired", "unit": "count", "values": [2, 5]},
        {"label": "Memory freed", "unit": "bytes", "values": [2048, 5 * 2**20]},
    ]
    page = text(response)
    assert "vendor/uplot/uPlot.iife.min.js" in page and "js/jobcharts.js" in page
    assert "Sessions expired: 5; Memory freed: 5.00 MiB" in page


def test_an_unknown_jobs_page_is_404(as_viewer):
    assert as_viewer.get("/jobs/nothing_here/").status_code == 404


def test_every_page_says_when_no_scheduler_has_run(as_viewer):
    page = text(as_viewer.get("/deployments/"))
    assert 'class="banner banner-bad" role="alert"' in page and "No scheduler has run yet" in page


def test_every_page_says_when_the_scheduler_stopped_and_says_nothing_while_it_runs(as_viewer, settings):
    settings.SCHEDULER_STALE_AFTER_S = 180
    running_scheduler(age_s=600, jobs_age_s=600)
    assert "has not renewed its lock for 600 s" in text(as_viewer.get("/"))
    running_scheduler()
    page = text(as_viewer.get("/"))
    assert "banner-bad" not in page


def test_the_banner_costs_one_query(as_viewer):
    running_scheduler()
    with CaptureQueriesContext(connection) as queries:
        as_viewer.get("/audit/")
    assert sum("controlplane_schedulerlease" in q["sql"] for q in queries.captured_queries) == 1
