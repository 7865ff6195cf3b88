"""Request limits, the OpenAPI schema and its offline reference, readiness."""

import pytest

from controlplane import health
from controlplane.choices import Role

pytestmark = pytest.mark.django_db


def test_a_body_over_the_limit_gets_413_and_changes_nothing(clients, settings):
    from controlplane.models import Node

    big = {"hostname": "x", "cpu_cores": 1, "memory_bytes": 1, "labels": {"pad": "a" * settings.MAX_REQUEST_BYTES}}
    response = clients[Role.OPERATOR].post("/api/v1/nodes/", big, format="json")
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert not Node.objects.filter(hostname="x").exists()


def test_a_non_numeric_content_length_gets_400(client):
    response = client.post("/api/v1/nodes/", data="{}", content_type="application/json", CONTENT_LENGTH="ten")
    assert response.status_code == 400


def test_the_schema_describes_the_api(clients):
    response = clients[Role.VIEWER].get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    for path in [
        "/api/v1/model-versions/",
        "/api/v1/deployments/{id}/rollback/",
        "/api/v1/deployments/{id}/revisions/",
        "/api/v1/audit-events/",
        "/api/v1/nodes/",
        "/api/v1/gpus/",
        "/api/v1/tokens/",
    ]:
        assert path in schema["paths"], path
    assert "bearer" in str(schema["components"].get("securitySchemes", {})).lower()


def test_the_reference_page_loads_its_assets_from_this_server(client, viewer):

    client.force_login(viewer)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "http://" not in html.replace("http://testserver", "") and "https://" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html


async def test_static_files_are_served_by_the_asgi_app_without_login():
    import httpx

    from controlplane.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        asset = await http.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
        assert asset.status_code == 200 and len(asset.content) > 100_000
        assert (await http.get("/static/css/app.css")).status_code == 200
        assert (await http.get("/static/admin/css/base.css")).status_code == 200
        assert (await http.get("/static/nothing-here.css")).status_code == 404
        escape = await http.get("/static/%2e%2e/%2e%2e/controlplane/settings.py")
        assert escape.status_code == 404 and b"SECRET_KEY" not in escape.content


def test_readyz_answers_503_naming_what_failed(as_operator, monkeypatch):
    client = as_operator

    def broken():
        raise ConnectionError("worker did not answer")

    monkeypatch.setitem(health.READINESS_CHECKS, "worker", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["worker"]
    assert "worker did not answer" in body["checks"]["worker"]["error"]
    assert body["checks"]["database"]["ok"]


def test_readyz_names_a_deployment_whose_worker_is_not_serving(as_operator, deployment):
    from controlplane.models import Deployment

    client = as_operator
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["workers"]
    assert "demo-cpu (pending" in response.json()["checks"]["workers"]["error"]
    Deployment.objects.filter(pk=deployment.pk).update(status="running", worker_url="http://127.0.0.1:9")
    assert client.get("/readyz").status_code == 200


def test_anonymous_readyz_says_only_whether_each_check_passed(client, deployment, monkeypatch):
    monkeypatch.setitem(health.READINESS_CHECKS, "scheduler", lambda: {"host": "ops-host-1", "pid": 4242})
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["failed"] == ["workers"]
    assert body["checks"]["workers"] == {"ok": False} and body["checks"]["scheduler"] == {"ok": True}
    text = response.content.decode()
    assert "demo-cpu" not in text and "ops-host-1" not in text and "4242" not in text


def test_a_viewer_gets_no_detail_either(as_viewer, deployment):
    assert as_viewer.get("/readyz").json()["checks"]["workers"] == {"ok": False}
