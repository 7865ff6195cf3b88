"""Drift checks on the gateway's records (latency, output distribution); quality runs against a real worker in
tests/e2e. Each check stores its statistic, threshold, verdict and data, and fires or clears the drift alert."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from controlplane.choices import AlertState, DriftVerdict, Role
from controlplane.drift import checks as driftchecks
from controlplane.models import Alert, Deployment, DriftCheck, InferenceRecord

pytestmark = pytest.mark.django_db


def traffic(
    deployment,
    now,
    *,
    reference_latency=0.1,
    recent_latency=0.1,
    reference_len=20,
    recent_len=20,
    n_reference=400,
    n_recent=150,
    seed=0,
    settings=None,
):
    """Requests spread over the reference window and the recent window before ``now``."""
    rng = np.random.default_rng(seed)
    recent_s, reference_s = settings.DRIFT_RECENT_WINDOW_S, settings.DRIFT_REFERENCE_WINDOW_S
    rows = []
    for i in range(n_reference):
        at = now - timedelta(seconds=recent_s + reference_s * (1 - (i + 0.5) / n_reference))
        rows.append((at, reference_latency * rng.lognormal(0, 0.2), max(1, int(rng.normal(reference_len, 4)))))
    for i in range(n_recent):
        at = now - timedelta(seconds=recent_s * (1 - (i + 0.5) / n_recent))
        rows.append((at, recent_latency * rng.lognormal(0, 0.2), max(1, int(rng.normal(recent_len, 4)))))
    InferenceRecord.objects.bulk_create(
        [
            InferenceRecord(
                at=at,
                deployment=deployment,
                endpoint="completions",
                status_code=200,
                latency_s=latency,
                completion_tokens=length,
                prompt_tokens=5,
            )
            for at, latency, length in rows
        ]
    )


def test_a_slower_deployment_is_caught_with_the_figures_and_fires_the_alert(deployment, settings):
    now = timezone.now()
    traffic(deployment, now, recent_latency=0.25, settings=settings)
    [check] = driftchecks.run_checks(deployment, ["latency"], now=now)
    assert check.verdict == DriftVerdict.DRIFT
    assert check.statistic > check.threshold
    assert check.data["latency_s"]["after"]["median"] > 2 * check.data["latency_s"]["baseline"]["median"]
    assert "latency_s" in check.reason
    alert = Alert.objects.get(rule__kind="drift", deployment=deployment)
    assert alert.state == AlertState.FIRING and "latency" in alert.title.lower()


def test_an_unchanged_deployment_does_not_fire_and_a_cleared_one_resolves(deployment, settings):
    now = timezone.now()
    traffic(deployment, now, recent_latency=0.25, settings=settings)
    driftchecks.run_checks(deployment, ["latency"], now=now)
    InferenceRecord.objects.all().delete()
    later = now + timedelta(hours=1)
    traffic(deployment, later, seed=1, settings=settings)
    [check] = driftchecks.run_checks(deployment, ["latency"], now=later)
    assert check.verdict == DriftVerdict.OK
    assert Alert.objects.get(rule__kind="drift", deployment=deployment).state == AlertState.RESOLVED


def test_longer_answers_are_caught_by_the_distribution_check(deployment, settings):
    now = timezone.now()
    traffic(deployment, now, recent_len=40, settings=settings)
    [check] = driftchecks.run_checks(deployment, ["distribution"], now=now)
    assert check.verdict == DriftVerdict.DRIFT and check.statistic < check.threshold
    length = check.data["tests"][0]
    assert length["name"] == "length" and length["current"]["median"] > length["reference"]["median"]


def test_unchanged_lengths_pass_the_distribution_check(deployment, settings):
    now = timezone.now()
    traffic(deployment, now, settings=settings)
    [check] = driftchecks.run_checks(deployment, ["distribution"], now=now)
    assert check.verdict == DriftVerdict.OK


def test_too_few_requests_is_inconclusive_not_a_verdict(deployment, settings):
    now = timezone.now()
    traffic(deployment, now, n_reference=20, n_recent=5, settings=settings)
    checks = driftchecks.run_checks(deployment, ["latency", "distribution"], now=now)
    assert {c.verdict for c in checks} == {DriftVerdict.INCONCLUSIVE}
    assert not Alert.objects.exists()


def test_quality_without_a_worker_is_inconclusive(deployment):
    [check] = driftchecks.run_checks(deployment, ["quality"])
    assert check.verdict == DriftVerdict.INCONCLUSIVE and "no worker" in check.reason


def test_checks_are_listed_and_run_over_rest(clients, deployment, settings):
    now = timezone.now()
    traffic(deployment, now, settings=settings)
    url = f"/api/v1/deployments/{deployment.pk}/drift-checks/"
    assert clients[Role.VIEWER].post(url, {"kinds": ["latency"]}, format="json").status_code == 403
    response = clients[Role.OPERATOR].post(url, {"kinds": ["latency", "distribution"]}, format="json")
    assert response.status_code == 201
    assert [c["kind"] for c in response.json()] == ["latency", "distribution"]
    assert all(c["trigger"] == "manual" for c in response.json())
    listing = clients[Role.VIEWER].get(f"/api/v1/drift-checks/?deployment={deployment.pk}&kind=latency").json()
    assert listing["count"] == 1 and listing["results"][0]["data"]
    bad = clients[Role.OPERATOR].post(url, {"kinds": ["vibes"]}, format="json")
    assert bad.status_code == 400 and "kinds" in bad.json()


def test_the_scheduled_job_checks_every_running_deployment(deployment, settings):
    Deployment.objects.filter(pk=deployment.pk).update(status="running", worker_url="http://127.0.0.1:9")
    traffic(deployment, timezone.now(), settings=settings)
    result = driftchecks.run_scheduled_checks()
    assert result["deployments"] == 1
    assert DriftCheck.objects.filter(deployment=deployment).count() == 3
    quality = DriftCheck.objects.get(kind="quality")
    assert quality.verdict == DriftVerdict.INCONCLUSIVE and "has no golden set" in quality.reason


def test_the_drift_page_charts_the_checks(client, viewer, deployment, settings):
    now = timezone.now()
    traffic(deployment, now, settings=settings)
    driftchecks.run_checks(deployment, ["latency", "distribution"], now=now)
    client.force_login(viewer)
    page = client.get("/drift/").content.decode()
    assert 'id="drift-charts"' in page and "demo-cpu: Latency change point" in page
