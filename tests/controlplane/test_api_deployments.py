import pytest

from controlplane.choices import Role
from controlplane.models import AuditEvent, Deployment, DeploymentRevision

from .api_contract import DROP, CrudContract


class TestDeploymentsAPI(CrudContract):
    url = "/api/v1/deployments/"
    model = Deployment
    delete_role = None  # history is kept: deployments are stopped, not deleted
    bad_cases = {
        "missing name": ({"name": DROP}, "name"),
        "missing model version": ({"model_version": DROP}, "model_version"),
        "unknown model version": ({"model_version": 424242}, "model_version"),
        "duplicate name": ({"name": "demo-cpu"}, "name"),
        "config that is not an object": ({"config": [1, 2]}, "config"),
        "batch size below 1": ({"config": {"max_batch_size": 0}}, "config"),
        "absurd batch size": ({"config": {"max_batch_size": 10**6}}, "config"),
        "batch size of the wrong type": ({"config": {"max_batch_size": "8"}}, "config"),
        "batch size as a boolean": ({"config": {"max_batch_size": True}}, "config"),
        "unknown precision": ({"config": {"precision": "fp4"}}, "config"),
        "router weights of the wrong length": ({"config": {"router_weights": [1, 1, 1]}}, "config"),
        "negative router weight": ({"config": {"router_weights": [1, -1, 1, 1]}}, "config"),
        "too few experts left": ({"config": {"router_weights": [1, 0, 0, 0]}}, "config"),
        "unknown config key": ({"config": {"max_batch": 8}}, "config"),
        "negative headroom": ({"config": {"memory_headroom": -0.1}}, "config"),
        "context beyond the model": ({"config": {"max_seq_len": 100_000}}, "config"),
        "GPU of another node": ({"gpus": "OTHER_GPU"}, "gpus"),
        "unknown key": ({"replicas": 3}, "replicas"),
    }

    @pytest.fixture
    def instance(self, deployment):
        return deployment

    @pytest.fixture
    def create_payload(self, model_version, cpu_node):
        return {
            "name": "demo-2",
            "model_version": model_version.pk,
            "node": cpu_node.pk,
            "config": {"max_batch_size": 8},
        }

    @pytest.fixture
    def update_payload(self):
        return {"config": {"max_batch_size": 32, "session_timeout_s": 600}}

    def prepare_changes(self, changes, request):
        if changes.get("gpus") == "OTHER_GPU":
            return {"gpus": [request.getfixturevalue("gpu_node").gpus.first().pk]}
        return changes


@pytest.mark.django_db
def test_the_nested_error_names_the_config_key_and_the_bound(clients, model_version, cpu_node):
    payload = {
        "name": "d",
        "model_version": model_version.pk,
        "node": cpu_node.pk,
        "config": {"max_batch_size": 0, "router_weights": [1, 2]},
    }
    body = clients[Role.OPERATOR].post("/api/v1/deployments/", payload, format="json").json()
    assert body["config"]["max_batch_size"] == ["must be at least 1; got 0"]
    assert body["config"]["router_weights"] == ["needs one weight per expert: 4 values; got 2"]


@pytest.mark.django_db
def test_defaults_fill_the_config(clients, deployment):
    config = clients[Role.VIEWER].get(f"/api/v1/deployments/{deployment.pk}/").json()["config"]
    assert config["session_timeout_s"] == 600 and config["max_batch_size"] == 32  # the worker contract's defaults
    assert config["memory_headroom"] == 0.2
    assert config["precision"] == "fp32"
    assert config["router_weights"] is None


@pytest.mark.django_db
def test_every_change_writes_an_immutable_revision_and_rollback_restores_it(clients, deployment):
    url = f"/api/v1/deployments/{deployment.pk}/"
    operator = clients[Role.OPERATOR]
    assert operator.patch(url, {"config": {"max_batch_size": 48}}, format="json").json()["revision"] == 2
    weights = {"config": {"router_weights": [1.0, 1.5, 1.0, 0.5]}, "comment": "favour expert 1"}
    assert operator.patch(url, weights, format="json").json()["revision"] == 3
    # an identical change writes nothing
    assert operator.patch(url, {"config": {"max_batch_size": 48}}, format="json").json()["revision"] == 3

    revisions = clients[Role.VIEWER].get(url + "revisions/").json()["results"]
    assert [r["number"] for r in revisions] == [3, 2, 1]
    assert revisions[0]["comment"] == "favour expert 1"
    assert revisions[2]["config"]["max_batch_size"] == 32

    rollback = operator.post(url + "rollback/", {"revision": 1}, format="json")
    assert rollback.status_code == 200, rollback.json()
    body = rollback.json()
    assert body["revision"] == 4
    assert body["config"]["max_batch_size"] == 32 and body["config"]["router_weights"] is None
    restored = DeploymentRevision.objects.get(deployment=deployment, number=4)
    assert restored.restored_from == 1
    # the old revisions are untouched
    assert DeploymentRevision.objects.get(deployment=deployment, number=3).config["router_weights"] == [1, 1.5, 1, 0.5]
    event = AuditEvent.objects.filter(action="deployment.rollback").get()
    assert event.before["revision"] == 3 and event.after["revision"] == 4
    assert event.actor_name == "operator"


@pytest.mark.django_db
def test_revisions_cannot_be_edited_in_place(deployment):
    from django.core.exceptions import ValidationError

    revision = deployment.current_revision
    revision.config = {"max_batch_size": 999}
    with pytest.raises(ValidationError):
        revision.save()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"revision": 99}, "revision"),
        ({"revision": 0}, "revision"),
        ({"revision": "one"}, "revision"),
        ({}, "revision"),
        ({"revision": 1, "force": True}, "force"),
    ],
)
def test_a_bad_rollback_gets_400_and_changes_nothing(clients, deployment, body, field):
    clients[Role.OPERATOR].patch(
        f"/api/v1/deployments/{deployment.pk}/", {"config": {"max_batch_size": 4}}, format="json"
    )
    response = clients[Role.OPERATOR].post(f"/api/v1/deployments/{deployment.pk}/rollback/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert deployment.revisions.count() == 2


@pytest.mark.django_db
def test_viewers_cannot_roll_back(clients, deployment):
    response = clients[Role.VIEWER].post(
        f"/api/v1/deployments/{deployment.pk}/rollback/", {"revision": 1}, format="json"
    )
    assert response.status_code == 403


@pytest.mark.django_db
def test_the_diff_lists_what_changed_between_revisions(clients, deployment):
    url = f"/api/v1/deployments/{deployment.pk}/"
    clients[Role.OPERATOR].patch(url, {"config": {"max_batch_size": 64, "cache_ttl_s": 0}}, format="json")
    body = clients[Role.VIEWER].get(url + "diff/?from=1&to=2").json()
    assert body["changes"] == [
        {"key": "max_batch_size", "before": 32, "after": 64},
        {"key": "cache_ttl_s", "before": 300, "after": 0},
    ]
    assert clients[Role.VIEWER].get(url + "diff/?from=1&to=7").status_code == 400
    assert "from" in clients[Role.VIEWER].get(url + "diff/?from=x").json()


@pytest.mark.django_db
def test_changing_the_model_version_is_a_revision_and_is_checked_against_the_new_model(clients, deployment, model_dir):
    from .conftest import make_checkpoint

    path = make_checkpoint(model_dir / "demo-8x", n_experts=8)
    v8 = (
        clients[Role.OPERATOR]
        .post("/api/v1/model-versions/", {"name": "demo", "version": "v8", "artifact_path": str(path)}, format="json")
        .json()
    )
    url = f"/api/v1/deployments/{deployment.pk}/"
    clients[Role.OPERATOR].patch(url, {"config": {"router_weights": [1, 1, 1, 2]}}, format="json")
    # the 4-expert weights no longer fit an 8-expert model
    response = clients[Role.OPERATOR].patch(url, {"model_version": v8["id"]}, format="json")
    assert response.status_code == 400
    assert "router_weights" in response.json()["config"]
    response = clients[Role.OPERATOR].patch(
        url, {"model_version": v8["id"], "config": {"router_weights": None}}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["model_version_label"] == "demo:v8" and response.json()["revision"] == 3


@pytest.mark.django_db
def test_deprecated_versions_cannot_be_deployed(clients, model_version, cpu_node):
    clients[Role.OPERATOR].patch(f"/api/v1/model-versions/{model_version.pk}/", {"status": "deprecated"}, format="json")
    response = clients[Role.OPERATOR].post(
        "/api/v1/deployments/", {"name": "old", "model_version": model_version.pk, "node": cpu_node.pk}, format="json"
    )
    assert response.status_code == 400 and "model_version" in response.json()


@pytest.mark.django_db
def test_stopping_a_deployment_is_audited_without_a_new_revision(clients, deployment):
    url = f"/api/v1/deployments/{deployment.pk}/"
    body = clients[Role.OPERATOR].patch(url, {"desired_state": "stopped"}, format="json").json()
    assert body["desired_state"] == "stopped" and body["status"] == "stopped" and body["revision"] == 1
    assert AuditEvent.objects.filter(action="deployment.update", object_id=str(deployment.pk)).exists()
