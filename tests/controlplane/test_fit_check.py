"""The fit check refuses what does not fit, quoting the numbers, and counts what already runs there."""

import pytest

from controlplane.choices import Role
from controlplane.models import GPU, Deployment, Node
from controlplane.services.fit import estimate_memory

GiB = 2**30


@pytest.fixture
def big_model(clients, model_dir):
    """A registered version whose recorded parameter count is 35 billion (the artifact itself stays tiny)."""
    from controlplane.models import ModelVersion

    from .conftest import make_checkpoint

    path = make_checkpoint(model_dir / "big")
    body = (
        clients[Role.OPERATOR]
        .post("/api/v1/model-versions/", {"name": "big", "version": "v1", "artifact_path": str(path)}, format="json")
        .json()
    )
    version = ModelVersion.objects.get(pk=body["id"])
    version.parameter_count = 35_000_000_000
    version.save()
    return version


def test_the_estimate_adds_weights_kv_cache_and_overhead(big_model, settings):
    estimate = estimate_memory(big_model, {"precision": "fp16", "max_batch_size": 8, "max_seq_len": 256}, on_gpu=True)
    assert estimate.weights_bytes == 70_000_000_000
    # 2 (K and V) x 2 layers x 4 heads x 8 dims x 2 bytes, per token
    assert estimate.kv_cache_bytes == 8 * 256 * (2 * 2 * 4 * 8 * 2)
    assert estimate.overhead_bytes == settings.FIT_GPU_RUNTIME_BYTES + 7_000_000_000
    int8 = estimate_memory(big_model, {"precision": "int8", "max_batch_size": 8, "max_seq_len": 256}, on_gpu=True)
    assert int8.weights_bytes == 35_000_000_000


def test_a_deployment_that_does_not_fit_the_gpu_is_refused_with_the_numbers(clients, big_model, gpu_node):
    gpu = gpu_node.gpus.get(index=0)
    payload = {
        "name": "too-big",
        "model_version": big_model.pk,
        "node": gpu_node.pk,
        "gpus": [gpu.pk],
        "config": {"precision": "fp32"},
    }
    response = clients[Role.OPERATOR].post("/api/v1/deployments/", payload, format="json")
    assert response.status_code == 400
    message = response.json()["fit"][0]
    assert (
        "needs 144.18 GiB (weights 130.39 GiB at fp32" in message
        and "KV cache 4.00 MiB for batch 32 × 256 tokens" in message
    )
    assert "GPU 0 (NVIDIA A100 80GB PCIe) has 64.00 GiB usable" in message and "20% headroom" in message
    assert not Deployment.objects.filter(name="too-big").exists()


def test_it_fits_at_a_lower_precision_or_across_two_gpus(clients, big_model, gpu_node):
    gpus = list(gpu_node.gpus.values_list("pk", flat=True))
    one = {
        "name": "fp16-one",
        "model_version": big_model.pk,
        "node": gpu_node.pk,
        "gpus": gpus[:1],
        "config": {"precision": "fp16"},
    }
    assert clients[Role.OPERATOR].post("/api/v1/deployments/", one, format="json").status_code == 400
    two = {**one, "name": "fp16-two", "gpus": gpus}
    assert clients[Role.OPERATOR].post("/api/v1/deployments/", two, format="json").status_code == 201
    int8 = {**one, "name": "int8-one", "gpus": gpus[:1], "config": {"precision": "int8"}}
    response = clients[Role.OPERATOR].post("/api/v1/deployments/", int8, format="json")
    # GPU 0 now holds half of fp16-two (~36 GiB), so int8 (~37 GiB) no longer fits beside it
    assert response.status_code == 400
    assert "used by other running deployments" in response.json()["fit"][0]


def test_a_cpu_node_is_checked_against_host_memory(clients, model_version, db):
    small = Node.objects.create(hostname="tiny", cpu_cores=1, memory_bytes=600 * 2**20)
    payload = {"name": "squeezed", "model_version": model_version.pk, "node": small.pk}
    response = clients[Role.OPERATOR].post("/api/v1/deployments/", payload, format="json")
    assert response.status_code == 400
    assert "host memory of tiny has 480.00 MiB usable: 600.00 MiB total" in response.json()["fit"][0]
    # less headroom makes room
    payload["config"] = {"memory_headroom": 0.0}
    assert clients[Role.OPERATOR].post("/api/v1/deployments/", payload, format="json").status_code == 201


def test_a_config_change_that_stops_fitting_is_refused_and_leaves_the_revision(clients, big_model, gpu_node):
    gpus = list(gpu_node.gpus.values_list("pk", flat=True))
    created = (
        clients[Role.OPERATOR]
        .post(
            "/api/v1/deployments/",
            {
                "name": "int8",
                "model_version": big_model.pk,
                "node": gpu_node.pk,
                "gpus": gpus[:1],
                "config": {"precision": "int8"},
            },
            format="json",
        )
        .json()
    )
    response = clients[Role.OPERATOR].patch(
        f"/api/v1/deployments/{created['id']}/", {"config": {"precision": "fp32"}}, format="json"
    )
    assert response.status_code == 400 and "fit" in response.json()
    deployment = Deployment.objects.get(pk=created["id"])
    assert deployment.current_revision.number == 1 and deployment.config["precision"] == "int8"


def test_a_stopped_deployment_does_not_count_against_the_gpu(clients, big_model, gpu_node):
    gpu0 = gpu_node.gpus.get(index=0)
    first = (
        clients[Role.OPERATOR]
        .post(
            "/api/v1/deployments/",
            {
                "name": "a",
                "model_version": big_model.pk,
                "node": gpu_node.pk,
                "gpus": [gpu0.pk],
                "config": {"precision": "int8"},
            },
            format="json",
        )
        .json()
    )
    second = {
        "name": "b",
        "model_version": big_model.pk,
        "node": gpu_node.pk,
        "gpus": [gpu0.pk],
        "config": {"precision": "int8"},
    }
    assert clients[Role.OPERATOR].post("/api/v1/deployments/", second, format="json").status_code == 400
    clients[Role.OPERATOR].patch(f"/api/v1/deployments/{first['id']}/", {"desired_state": "stopped"}, format="json")
    assert clients[Role.OPERATOR].post("/api/v1/deployments/", second, format="json").status_code == 201
    assert GPU.objects.get(pk=gpu0.pk).deployments.count() == 2


def test_it_refuses_fp16_on_a_deployment_without_gpus(clients, deployment):
    response = clients[Role.OPERATOR].patch(
        f"/api/v1/deployments/{deployment.pk}/", {"config": {"precision": "fp16"}}, format="json"
    )
    assert response.status_code == 400
    assert "fp16 is not supported on cpu" in response.json()["config"]["precision"][0]
    deployment.refresh_from_db()
    assert deployment.current_revision.number == 1 and deployment.config["precision"] != "fp16"


def test_it_refuses_to_create_an_fp16_deployment_on_the_cpu(clients, model_version, cpu_node):
    payload = {"name": "half", "model_version": model_version.pk, "node": cpu_node.pk, "config": {"precision": "fp16"}}
    response = clients[Role.OPERATOR].post("/api/v1/deployments/", payload, format="json")
    assert response.status_code == 400 and "precision" in response.json()["config"]
    assert not Deployment.objects.filter(name="half").exists()
