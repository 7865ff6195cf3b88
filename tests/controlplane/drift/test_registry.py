"""Drift checks are Registry entries: every stored kind has one, a bad entry is refused when registered, and what
runs, what the page charts and what the API accepts is whatever is registered."""

import dataclasses

import pytest
from django.utils import timezone

from controlplane.choices import DriftKind, DriftVerdict, Role
from controlplane.drift import checks as driftchecks
from controlplane.extensions import Registry, RegistryError
from controlplane.models import DriftCheck


def test_every_stored_kind_has_its_check_in_declaration_order():
    assert driftchecks.CHECKS.names() == list(DriftKind.values)


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"name": "vibes"}, "choices.DriftKind"),
        ({"function": "check_vibes"}, "not callable"),
        ({"fires": "sideways"}, "above or below"),
        ({"doc": ""}, "doc"),
    ],
)
def test_a_bad_check_is_refused_when_registered(change, problem):
    entry = dataclasses.replace(driftchecks.CHECKS[DriftKind.LATENCY], **change)
    with pytest.raises(RegistryError, match=problem):
        Registry[driftchecks.Check]("drift check", check=driftchecks._check_entry).register(entry)


@pytest.fixture
def replaced_latency():
    """The latency kind served by a check written for the test: one entry and its function, nothing else."""
    calls = []

    def check_flat(deployment, context):
        calls.append((deployment.name, context.now))
        return {"verdict": DriftVerdict.DRIFT, "reason": "flat out", "statistic": 4.0, "threshold": 2.0}

    registered = list(driftchecks.CHECKS)
    driftchecks.CHECKS.unregister(DriftKind.LATENCY)
    driftchecks.CHECKS.register(driftchecks.Check(DriftKind.LATENCY, check_flat, "above", "A test's own check."))
    yield calls
    for name in driftchecks.CHECKS.names():
        driftchecks.CHECKS.unregister(name)
    for entry in registered:
        driftchecks.CHECKS.register(entry)


@pytest.mark.django_db
def test_the_registered_function_is_what_runs_is_stored_and_is_charted(replaced_latency, deployment, client, viewer):
    now = timezone.now()
    [check] = driftchecks.run_checks(deployment, [DriftKind.LATENCY], now=now)
    assert replaced_latency == [(deployment.name, now)]
    assert check.verdict == DriftVerdict.DRIFT and check.reason == "flat out"
    assert driftchecks.closeness(check) == 2.0
    client.force_login(viewer)
    page = client.get("/drift/").content.decode()
    assert f"d{deployment.pk}-latency" in page and "A test&#x27;s own check." in page


@pytest.mark.django_db
def test_a_p_value_check_is_charted_as_how_far_below_alpha_it_fell(deployment):
    check = DriftCheck(deployment=deployment, kind=DriftKind.DISTRIBUTION, statistic=0.01, threshold=0.05)
    assert driftchecks.closeness(check) == 5.0


@pytest.mark.django_db
def test_the_api_runs_the_registered_checks(replaced_latency, clients, deployment):
    url = f"/api/v1/deployments/{deployment.pk}/drift-checks/"
    response = clients[Role.OPERATOR].post(url, {"kinds": ["latency"]}, format="json")
    assert response.status_code == 201 and response.json()[0]["reason"] == "flat out"
    assert len(replaced_latency) == 1
