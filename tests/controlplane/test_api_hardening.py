"""No input gets a 500: bad query and path values are 400s in JSON naming the field; anything unexpected under
/api/ is still JSON."""

import pytest
from rest_framework.test import APIClient

from controlplane.choices import Role

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/sessions/?deployment=abc", "deployment"),
        ("/api/v1/sessions/?deployment=null", "deployment"),
        ("/api/v1/sessions/?deployment=%C2%B2", "deployment"),
        ("/api/v1/metrics/series/?node=%C2%B2", "node"),
        ("/api/v1/metrics/query/?node=%C2%B2", "node"),
        ("/api/v1/usage/?since=2020-13-45T99:00", "since"),
        ("/api/v1/usage/?since=yesterday", "since"),
    ],
)
def test_a_bad_query_value_is_a_400_in_json_naming_the_field(clients, path, field):
    response = clients[Role.ADMIN].get(path)
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/json")
    assert field in response.json()


def test_an_impossible_time_in_a_metrics_query_is_refused_naming_the_field():
    from controlplane.monitoring import history
    from controlplane.services.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        history._parse_time("start", "2020-13-45T99:00", 0.0, 0.0)
    assert "start" in refused.value.errors


@pytest.mark.parametrize("pk", ["%C2%B2:abc", "abc:def", "12", "1:"])
def test_ending_a_session_with_a_malformed_id_is_a_400_naming_the_id(clients, pk):
    response = clients[Role.ADMIN].delete(f"/api/v1/sessions/{pk}/")
    assert response.status_code == 400
    assert "id" in response.json()


def test_a_non_ascii_bearer_on_metrics_is_a_401_not_a_500(client, settings):
    settings.METRICS_TOKEN = "scrape-" + "s" * 40
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-\u00e9\u00e9")
    assert response.status_code in (401, 403)
    assert response.status_code != 500


def test_a_non_ascii_bearer_on_the_api_is_a_401(client):
    response = client.get("/api/v1/me/", HTTP_AUTHORIZATION="Bearer \u00e9\u00e9\u00e9")
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")


def test_an_unexpected_error_under_the_api_is_a_500_in_json(clients, monkeypatch):
    from controlplane.workers import actions

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(actions, "usage_summary", broken)
    client: APIClient = clients[Role.ADMIN]
    response = client.get("/api/v1/usage/")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error.", "code": "server_error"}
    assert "boom" not in response.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/deployments/?node=987654",
        "/api/v1/worker-events/?deployment=987654",
        "/api/v1/alerts/?deployment=987654&rule=987654",
        "/api/v1/notifications/?alert=987654",
        "/api/v1/golden-sets/?model_version=987654",
    ],
)
def test_filtering_on_an_id_no_object_has_lists_nothing(clients, path):
    response = clients[Role.VIEWER].get(path)
    assert response.status_code == 200, response.content
    assert response.json()["count"] == 0


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/deployments/?status=", "status"),
        ("/api/v1/audit-events/?until=", "until"),
        ("/api/v1/job-runs/?since=", "since"),
        ("/api/v1/deployments/?node=abc", "node"),
        ("/api/v1/nodes/?offset=null", "offset"),
        ("/api/v1/nodes/?limit=ten", "limit"),
    ],
)
def test_an_empty_or_mistyped_filter_or_page_parameter_is_a_400_naming_it(clients, path, field):
    response = clients[Role.VIEWER].get(path)
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_free_text_filters_may_be_empty_and_pages_may_be_given(clients):
    assert clients[Role.VIEWER].get("/api/v1/deployments/?name=").status_code == 200
    assert clients[Role.VIEWER].get("/api/v1/nodes/?limit=5&offset=0").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/gpus/?node=26563387898149835451135162318848",
        "/api/v1/golden-sets/?model_version=-12635877928374775808",
        "/api/v1/alerts/?rule=-3712257758039524014431918354333696",
        "/api/v1/sessions/?deployment=99999999999999999999999",
        "/api/v1/sessions/?deployment=-3",
    ],
)
def test_an_id_beyond_any_id_lists_nothing_rather_than_overflowing_the_database(clients, path):
    response = clients[Role.VIEWER].get(path)
    assert response.status_code == 200, response.content
    assert response.json()["count"] == 0


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/nodes/?is_local=null", "is_local"),
        ("/api/v1/alert-rules/?enabled=maybe", "enabled"),
        ("/api/v1/usage/?since=", "since"),
        ("/api/v1/sessions/?deployment=", "deployment"),
    ],
)
def test_a_boolean_or_time_parameter_takes_only_its_own_values(clients, path, field):
    response = clients[Role.VIEWER].get(path)
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_true_or_false_is_not_a_number_in_a_body(clients, model_version):
    response = clients[Role.OPERATOR].patch(
        f"/api/v1/model-versions/{model_version.pk}/", {"baseline_quality": False}, format="json"
    )
    assert response.status_code == 400
    assert "baseline_quality" in response.json()


def test_a_revision_number_beyond_any_revision_is_a_400_not_an_overflow(clients, deployment):
    response = clients[Role.VIEWER].get(
        f"/api/v1/deployments/{deployment.pk}/diff/?from=1&to=1321136718022931476643840"
    )
    assert response.status_code == 400
    assert "to" in response.json()


def test_ending_a_session_of_a_deployment_that_does_not_exist_is_a_404(clients):
    response = clients[Role.ADMIN].delete("/api/v1/sessions/987654:abc/")
    assert response.status_code == 404


def test_a_number_is_not_text_in_a_body(clients, model_version):
    response = clients[Role.OPERATOR].patch(
        f"/api/v1/model-versions/{model_version.pk}/", {"description": 0}, format="json"
    )
    assert response.status_code == 400
    assert "description" in response.json()


def test_ending_a_session_the_worker_does_not_have_is_a_404(clients, deployment, monkeypatch):
    from controlplane.services.errors import InvalidInput
    from controlplane.workers import actions

    def no_such_session(actor, deployment, session_id):
        raise InvalidInput.field("session", f"{deployment.name} has no session {session_id!r}")

    monkeypatch.setattr(actions, "end_session", no_such_session)
    response = clients[Role.ADMIN].delete(f"/api/v1/sessions/{deployment.pk}:gone/")
    assert response.status_code == 404
    assert "no session 'gone'" in response.json()["detail"]


def test_the_diff_is_documented_as_what_it_answers(clients):
    schema = clients[Role.VIEWER].get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    body = schema["paths"]["/api/v1/deployments/{id}/diff/"]["get"]["responses"]["200"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/RevisionDiff"}
    assert "Refuse keys" not in str(schema["components"]["schemas"]["Deployment"])


def test_a_negative_baseline_is_refused_on_update_as_on_registration(clients, model_version):
    response = clients[Role.OPERATOR].patch(
        f"/api/v1/model-versions/{model_version.pk}/", {"baseline_quality": -3.5}, format="json"
    )
    assert response.status_code == 400
    assert "baseline_quality" in response.json()
    model_version.refresh_from_db()
    assert model_version.baseline_quality is None or model_version.baseline_quality >= 0
