"""Dashboard pages: they render per role, call the same services as the API, and show bad input on the page."""

import re

import pytest

from controlplane.models import ApiToken, AuditEvent, Deployment, ModelVersion

from .conftest import page_text as text

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/", "/models/", "/nodes/", "/deployments/", "/audit/", "/tokens/"])
def test_viewers_see_the_pages(as_viewer, deployment, path):
    response = as_viewer.get(path)
    assert response.status_code == 200
    assert "demo" in text(response) or path in ("/tokens/", "/nodes/")


def test_the_detail_pages_render(as_viewer, deployment):
    node = deployment.node
    assert "cpu-host" in text(as_viewer.get(f"/nodes/{node.pk}/"))
    page = text(as_viewer.get(f"/models/{deployment.model_version.pk}/"))
    assert deployment.model_version.sha256 in page and "demo-cpu" in page
    page = text(as_viewer.get(f"/deployments/{deployment.pk}/"))
    assert "max_batch_size" in page and "Estimated memory" in page


@pytest.mark.parametrize("path", ["/models/new/", "/deployments/new/", "/nodes/new/", "/users/"])
def test_viewers_are_refused_changes_with_a_message(as_viewer, path):
    response = as_viewer.get(path)
    assert response.status_code == 403
    assert "needs the" in text(response)


def test_an_operator_registers_a_model_version_through_the_form(as_operator, checkpoint):
    response = as_operator.post(
        "/models/new/", {"name": "demo", "version": "v5", "artifact_path": str(checkpoint), "precision": "fp32"}
    )
    assert response.status_code == 302
    version = ModelVersion.objects.get(version="v5")
    assert version.size_bytes > 0
    assert AuditEvent.objects.get(action="model_version.create").source == "dashboard"


def test_bad_form_input_is_shown_on_the_page_and_changes_nothing(as_operator, model_dir):
    response = as_operator.post(
        "/models/new/", {"name": "demo", "version": "v5", "artifact_path": str(model_dir / "nope"), "precision": "fp32"}
    )
    assert response.status_code == 400
    assert "does not exist" in text(response)
    assert 'data-field="artifact_path"' in text(response)
    assert not ModelVersion.objects.exists()


def test_a_deployment_form_error_names_the_config_field(as_operator, model_version, cpu_node):
    response = as_operator.post(
        "/deployments/new/",
        {
            "name": "d",
            "model_version": model_version.pk,
            "node": cpu_node.pk,
            "desired_state": "running",
            "max_batch_size": "0",
            "router_weights": "1, 1, x",
        },
    )
    assert response.status_code == 400
    page = text(response)
    assert 'data-field="router_weights"' in page and "numbers separated by commas" in page
    response = as_operator.post(
        "/deployments/new/",
        {
            "name": "d",
            "model_version": model_version.pk,
            "node": cpu_node.pk,
            "desired_state": "running",
            "max_batch_size": "0",
        },
    )
    assert 'data-field="max_batch_size"' in text(response) and "must be at least 1; got 0" in text(response)
    assert not Deployment.objects.filter(name="d").exists()


def test_editing_a_deployment_writes_a_revision_and_the_page_shows_the_diff(as_operator, deployment):
    response = as_operator.post(
        f"/deployments/{deployment.pk}/edit/",
        {
            "model_version": deployment.model_version.pk,
            "desired_state": "running",
            "max_batch_size": "48",
            "router_weights": "1, 2, 1, 1",
            "comment": "more batching",
        },
    )
    assert response.status_code == 302, text(response)
    deployment.refresh_from_db()
    assert deployment.current_revision.number == 2
    assert deployment.config["router_weights"] == [1.0, 2.0, 1.0, 1.0]
    page = text(as_operator.get(f"/deployments/{deployment.pk}/?from=1&to=2"))
    assert "more batching" in page
    assert '<code>max_batch_size</code></td><td class="before">32</td><td class="after">48</td>' in page


def test_the_rollback_button_restores_a_revision(as_operator, deployment):
    as_operator.post(
        f"/deployments/{deployment.pk}/edit/",
        {"model_version": deployment.model_version.pk, "desired_state": "running", "max_batch_size": "48"},
    )
    response = as_operator.post(f"/deployments/{deployment.pk}/rollback/", {"revision": "1"}, follow=True)
    assert "Restored revision 1" in text(response)
    deployment.refresh_from_db()
    assert deployment.current_revision.number == 3 and deployment.config["max_batch_size"] == 32
    response = as_operator.post(f"/deployments/{deployment.pk}/rollback/", {"revision": "9"}, follow=True)
    assert "has no revision 9" in text(response)


def test_the_audit_page_filters_events(as_viewer, deployment):
    page = text(as_viewer.get("/audit/?action=deployment.create"))
    assert "deployment.create" in page and "model_version.create" not in page


def test_a_token_created_in_the_dashboard_is_shown_once(as_viewer, viewer):
    response = as_viewer.post("/tokens/", {"name": "laptop", "scope": "full"})
    raw = re.search(r'<code id="new-token">([^<]+)</code>', response.content.decode()).group(1)
    assert ApiToken.lookup(raw).user == viewer
    assert raw not in as_viewer.get("/tokens/").content.decode()


def test_admins_add_users_and_bad_passwords_are_shown(as_admin):
    response = as_admin.post(
        "/users/new/", {"username": "ops", "role": "operator", "password": "short", "is_active": "on"}
    )
    assert response.status_code == 400 and "password" in text(response)
    response = as_admin.post(
        "/users/new/", {"username": "ops", "role": "operator", "password": "a-much-longer-pass-7", "is_active": "on"}
    )
    assert response.status_code == 302


def test_only_admins_delete_from_the_registry(client, operator, admin_user, model_version):
    client.force_login(operator)
    assert client.post(f"/models/{model_version.pk}/delete/").status_code == 403
    client.force_login(admin_user)
    assert client.post(f"/models/{model_version.pk}/delete/").status_code == 302
    assert not ModelVersion.objects.exists()
