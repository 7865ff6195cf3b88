import pytest

from controlplane.choices import Role
from controlplane.models import GPU, Node

from .api_contract import DROP, CrudContract


class TestNodesAPI(CrudContract):
    url = "/api/v1/nodes/"
    model = Node
    bad_cases = {
        "missing hostname": ({"hostname": DROP}, "hostname"),
        "zero CPU cores": ({"cpu_cores": 0}, "cpu_cores"),
        "negative memory": ({"memory_bytes": -1}, "memory_bytes"),
        "zero memory": ({"memory_bytes": 0}, "memory_bytes"),
        "memory of the wrong type": ({"memory_bytes": "lots"}, "memory_bytes"),
        "unknown role": ({"role": "boss"}, "role"),
        "duplicate hostname": ({"hostname": "cpu-host"}, "hostname"),
        "labels that are not an object": ({"labels": ["a"]}, "labels"),
        "unknown key": ({"gpu_count": 4}, "gpu_count"),
    }

    @pytest.fixture
    def instance(self, cpu_node):
        return cpu_node

    @pytest.fixture
    def create_payload(self):
        return {
            "hostname": "worker-2",
            "address": "10.0.0.2",
            "cpu_cores": 64,
            "memory_bytes": 512 * 2**30,
            "role": "worker",
        }

    @pytest.fixture
    def update_payload(self):
        return {"status": "draining", "address": "10.0.0.9"}


class TestGPUsAPI(CrudContract):
    url = "/api/v1/gpus/"
    model = GPU
    bad_cases = {
        "missing node": ({"node": DROP}, "node"),
        "unknown node": ({"node": 999999}, "node"),
        "negative index": ({"index": -1}, "index"),
        "zero memory": ({"memory_total_bytes": 0}, "memory_total_bytes"),
        "memory of the wrong type": ({"memory_total_bytes": [80]}, "memory_total_bytes"),
        "duplicate uuid": ({"uuid": "GPU-0000"}, "uuid"),
        "unknown key": ({"temperature": 40}, "temperature"),
    }

    @pytest.fixture
    def instance(self, gpu_node):
        return gpu_node.gpus.first()

    @pytest.fixture
    def create_payload(self, gpu_node):
        return {
            "node": gpu_node.pk,
            "index": 2,
            "uuid": "GPU-0002",
            "name": "NVIDIA H100",
            "memory_total_bytes": 80 * 2**30,
            "driver_version": "550.54",
            "cuda_version": "12.4",
        }

    @pytest.fixture
    def update_payload(self):
        return {"driver_version": "555.42"}


@pytest.mark.django_db
def test_a_node_with_deployments_cannot_be_deleted(clients, deployment):
    response = clients[Role.ADMIN].delete(f"/api/v1/nodes/{deployment.node_id}/")
    assert response.status_code == 409
    assert "demo-cpu" in response.json()["detail"]


@pytest.mark.django_db
def test_the_local_node_registers_with_its_real_figures():
    import os

    import psutil

    from controlplane.services.inventory import register_local_node

    node = register_local_node()
    assert node.is_local
    assert node.cpu_cores == os.cpu_count()
    assert node.memory_bytes == psutil.virtual_memory().total
    again = register_local_node()
    assert again.pk == node.pk and Node.objects.filter(is_local=True).count() == 1
