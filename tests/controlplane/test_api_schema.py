"""The OpenAPI schema says what the API answers: shapes, nullability, errors, a tag per resource, a summary each."""

import pytest

from controlplane.choices import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(clients) -> dict:
    response = clients[Role.VIEWER].get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_every_operation_has_its_resource_tag_a_summary_and_its_errors(schema):
    for method, path, operation in _operations(schema):
        resource = path.removeprefix("/api/v1/").split("/")[0]
        assert operation["tags"] == [resource], (method, path)
        assert operation["summary"], (method, path)
        assert {"401", "403"} <= set(operation["responses"]), (method, path)
        if "{" in path:
            assert "404" in operation["responses"], (method, path)
        if method in ("post", "patch", "put"):
            assert "400" in operation["responses"], (method, path)
    error = schema["paths"]["/api/v1/deployments/{id}/"]["get"]["responses"]["404"]
    assert error["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_users_that_may_be_gone_are_nullable(schema):
    components = schema["components"]["schemas"]
    for component, field in [
        ("Deployment", "created_by"),
        ("ModelVersion", "created_by"),
        ("JobRun", "requested_by"),
        ("Alert", "acknowledged_by"),
    ]:
        assert components[component]["properties"][field].get("nullable") is True, (component, field)


def test_the_shapes_of_me_jobs_drift_checks_cache_and_worker(schema):
    def body(method: str, path: str, code: str = "200") -> dict:
        return schema["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]

    assert body("get", "/api/v1/me/") == {"$ref": "#/components/schemas/Me"}
    assert body("get", "/api/v1/jobs/") == {"$ref": "#/components/schemas/JobList"}
    drift = body("post", "/api/v1/deployments/{id}/drift-checks/", "201")
    assert drift == {"type": "array", "items": {"$ref": "#/components/schemas/DriftCheck"}}
    for path in ("/api/v1/deployments/{id}/cache/", "/api/v1/deployments/{id}/worker/"):
        assert body("get", path)["type"] == "object"
    assert "202" in schema["paths"]["/api/v1/deployments/{id}/restart/"]["post"]["responses"]
