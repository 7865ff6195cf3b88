import json

import pytest

from controlplane.choices import Role
from controlplane.models import GoldenSet
from controlplane.services import registry
from controlplane.services.golden import create_golden_set

from .api_contract import DROP, CrudContract
from .conftest import make_checkpoint

ITEMS = [{"prompt": "Return the", "reference": " number of items."}, {"prompt": "If", "reference": " true, raise."}]


class TestGoldenSetsAPI(CrudContract):
    url = "/api/v1/golden-sets/"
    model = GoldenSet
    write_role = Role.OPERATOR
    bad_cases = {
        "missing items": ({"items": DROP}, "items"),
        "empty items": ({"items": []}, "items"),
        "item without a reference or output": ({"items": [{"prompt": "x"}]}, "items"),
        "item with max_tokens out of range": ({"items": [{"prompt": "x", "output": "y", "max_tokens": 0}]}, "items"),
        "item with an empty prompt": ({"items": [{"prompt": " ", "reference": "y"}]}, "items"),
        "item with unknown keys": ({"items": [{"prompt": "x", "reference": "y", "score": 1}]}, "items"),
        "JSON Lines with a broken line": ({"items": '{"prompt": "x", "reference": "y"}\n{oops'}, "items"),
        "unknown model version": ({"model_version": 424242}, "model_version"),
        "unknown key": ({"owner": "me"}, "owner"),
    }

    @pytest.fixture
    def instance(self, actor, model_version):
        return create_golden_set(actor, model_version, "basics", ITEMS)

    @pytest.fixture
    def create_payload(self, model_version):
        return {"model_version": model_version.pk, "name": "more", "items": ITEMS}

    @pytest.fixture
    def update_payload(self):
        return {}

    def test_the_writer_updates(self, clients, instance, update_payload):
        """Golden sets are replaced by uploading a new one, not edited."""
        response = clients[Role.OPERATOR].patch(self.detail_url(instance), {"name": "x"}, format="json")
        assert response.status_code == 405

    def test_a_role_below_the_writer_cannot_update(self, clients, instance, update_payload):
        assert clients[Role.VIEWER].patch(self.detail_url(instance), {"name": "x"}, format="json").status_code == 403


@pytest.mark.django_db
def test_json_lines_are_accepted(clients, model_version):
    lines = "\n".join(json.dumps(item) for item in ITEMS) + "\n"
    response = clients[Role.OPERATOR].post(
        "/api/v1/golden-sets/", {"model_version": model_version.pk, "name": "jsonl", "items": lines}, format="json"
    )
    assert response.status_code == 201 and response.json()["item_count"] == 2


@pytest.mark.django_db
def test_a_golden_set_shipped_beside_the_artifact_is_imported_on_registration(actor, model_dir):
    path = make_checkpoint(model_dir / "with-golden")
    (path / "golden.jsonl").write_text("\n".join(json.dumps(item) for item in ITEMS))
    version = registry.register_model_version(actor, name="g", version="v1", artifact_path=str(path))
    golden = version.golden_sets.get()
    assert [item["reference"] for item in golden.items] == [item["reference"] for item in ITEMS]
    assert golden.texts()[0] == "Return the number of items."


@pytest.mark.django_db
def test_a_set_of_recorded_outputs_is_scored_on_them(actor, model_version):
    golden = create_golden_set(
        actor,
        model_version,
        "outputs",
        [{"prompt": "Return the ", "output": "server the server", "max_tokens": 48, "temperature": 0.0}],
    )
    assert golden.items[0]["max_tokens"] == 48 and golden.texts() == ["Return the server the server"]
