import pytest

from controlplane.choices import Role
from controlplane.models import ModelVersion
from inference.artifacts import artifact_digest

from .api_contract import DROP, CrudContract


class TestModelVersionsAPI(CrudContract):
    url = "/api/v1/model-versions/"
    model = ModelVersion
    bad_cases = {
        "missing name": ({"name": DROP}, "name"),
        "missing artifact": ({"artifact_path": DROP}, "artifact_path"),
        "name of the wrong type": ({"name": ["demo"]}, "name"),
        "baseline of the wrong type": ({"baseline_quality": "good"}, "baseline_quality"),
        "negative baseline": ({"baseline_quality": -1.0}, "baseline_quality"),
        "unknown precision": ({"precision": "fp8"}, "precision"),
        "unknown format": ({"format": "onnx"}, "format"),
        "duplicate name and version": ({"version": "v1"}, "version"),
        "artifact that does not exist": ({"artifact_path": "MODELDIR/missing"}, "artifact_path"),
        "artifact outside the model directories": ({"artifact_path": "/etc"}, "artifact_path"),
        "artifact escaping with ..": ({"artifact_path": "MODELDIR/../.."}, "artifact_path"),
        "artifact that is not a checkpoint": ({"artifact_path": "MODELDIR/empty"}, "artifact_path"),
        "format that does not match": ({"format": "hf"}, "format"),
        "checksum that does not match": ({"sha256": "0" * 64}, "sha256"),
        "malformed checksum": ({"sha256": "xyz"}, "sha256"),
        "unknown key": ({"colour": "red"}, "colour"),
    }

    @pytest.fixture
    def instance(self, model_version):
        return model_version

    @pytest.fixture
    def create_payload(self, checkpoint, model_dir):
        (model_dir / "empty").mkdir()
        return {"name": "demo", "version": "v2", "artifact_path": str(checkpoint)}

    @pytest.fixture
    def update_payload(self):
        return {"status": "validated", "description": "passed the golden set"}

    def prepare_changes(self, changes, request):
        root = str(request.getfixturevalue("model_dir"))
        return {k: v.replace("MODELDIR", root) if isinstance(v, str) else v for k, v in changes.items()}


@pytest.mark.django_db
def test_registering_measures_size_checksum_parameters_and_architecture(clients, checkpoint):
    response = clients[Role.OPERATOR].post(
        "/api/v1/model-versions/", {"name": "demo", "version": "v9", "artifact_path": str(checkpoint)}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    files = [p for p in checkpoint.iterdir() if p.is_file()]
    assert body["size_bytes"] == sum(p.stat().st_size for p in files)
    assert body["sha256"] == artifact_digest(checkpoint)
    # embed 259x32 + 2 layers x (router 4x32 + 4 experts x 64x32)
    assert body["parameter_count"] == 259 * 32 + 2 * (4 * 32 + 4 * 64 * 32)
    assert body["architecture"]["n_experts"] == 4 and body["architecture"]["top_k"] == 2
    assert body["baseline_quality"] == 6.5
    assert body["format"] == "moe" and body["created_by"] == "operator"


@pytest.mark.django_db
def test_a_matching_checksum_is_accepted(clients, checkpoint):
    payload = {"name": "demo", "version": "v3", "artifact_path": str(checkpoint), "sha256": artifact_digest(checkpoint)}
    assert clients[Role.OPERATOR].post("/api/v1/model-versions/", payload, format="json").status_code == 201


@pytest.mark.django_db
def test_identity_fields_cannot_change_after_registration(clients, model_version):
    response = clients[Role.OPERATOR].patch(
        f"/api/v1/model-versions/{model_version.pk}/", {"artifact_path": "/elsewhere"}, format="json"
    )
    assert response.status_code == 400
    assert "artifact_path" in response.json()


@pytest.mark.django_db
def test_a_version_in_use_cannot_be_deleted(clients, deployment):
    version = deployment.model_version
    response = clients[Role.ADMIN].delete(f"/api/v1/model-versions/{version.pk}/")
    assert response.status_code == 409
    assert "demo-cpu" in response.json()["detail"]
    assert ModelVersion.objects.filter(pk=version.pk).exists()


@pytest.mark.parametrize(
    ("artifact", "expected"),
    [
        ("MODELDIR/missing", "missing does not exist"),
        ("/etc", "is outside the model directories"),
        ("MODELDIR/broken", "is not a readable model checkpoint"),
    ],
)
def test_artifact_errors_name_paths_relative_to_the_model_directory(clients, model_dir, artifact, expected):
    from django.conf import settings as django_settings

    (model_dir / "broken").mkdir()
    (model_dir / "broken" / "config.json").write_text("{not json")
    body = {"name": "x", "version": "1", "artifact_path": artifact.replace("MODELDIR", str(model_dir))}
    response = clients[Role.OPERATOR].post("/api/v1/model-versions/", body, format="json")
    assert response.status_code == 400
    message = response.json()["artifact_path"][0]
    assert expected in message
    assert str(model_dir) not in message and str(django_settings.BASE_DIR) not in message
