"""Fixtures for the control plane: users per role with API clients, a real checkpoint on disk, nodes, deployments."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from rest_framework.test import APIClient
from safetensors.numpy import save_file

from controlplane.choices import AuditSource, Role
from controlplane.models import GPU, ApiToken, Node, User
from controlplane.services import audit, deployments, registry

PASSWORD = "a-long-test-password-1"


def make_checkpoint(
    directory: Path,
    *,
    n_experts: int = 4,
    top_k: int = 2,
    d_model: int = 32,
    n_layers: int = 2,
    seed: int = 0,
    perplexity: float | None = 6.5,
) -> Path:
    """A small native MoE checkpoint: config.json + model.safetensors with real tensors."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {"embed.weight": rng.standard_normal((259, d_model), dtype=np.float32)}
    for layer in range(n_layers):
        tensors[f"layers.{layer}.router.weight"] = rng.standard_normal((n_experts, d_model), dtype=np.float32)
        for expert in range(n_experts):
            tensors[f"layers.{layer}.experts.{expert}.w1"] = rng.standard_normal((64, d_model), dtype=np.float32)
    save_file(tensors, str(directory / "model.safetensors"))
    config = {
        "model_type": "lcp-moe",
        "vocab_size": 259,
        "d_model": d_model,
        "n_layers": n_layers,
        "n_heads": 4,
        "n_kv_heads": 4,
        "d_ff": 64,
        "n_experts": n_experts,
        "top_k": top_k,
        "max_seq_len": 256,
        "tokenizer": "byte",
        "torch_dtype": "float32",
    }
    if perplexity is not None:
        config["quality"] = {"heldout_perplexity": perplexity, "heldout_tokens": 1000}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture
def model_dir(tmp_path, settings) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    settings.MODEL_DIRS = [root.resolve()]
    return root.resolve()


@pytest.fixture
def checkpoint(model_dir) -> Path:
    return make_checkpoint(model_dir / "demo-v1")


def _user(role: str) -> User:
    return User.objects.create_user(username=role, password=PASSWORD, role=role, email=f"{role}@example.org")


@pytest.fixture
def viewer(db):
    return _user(Role.VIEWER)


@pytest.fixture
def operator(db):
    return _user(Role.OPERATOR)


@pytest.fixture
def admin_user(db):
    return _user(Role.ADMIN)


def page_text(response) -> str:
    """A page's HTML with runs of white space folded, for assertions on what it says."""
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.fixture
def as_viewer(client, viewer):
    """The Django test client signed in as a viewer (likewise ``as_operator``, ``as_admin``)."""
    client.force_login(viewer)
    return client


@pytest.fixture
def as_operator(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def as_admin(client, admin_user):
    client.force_login(admin_user)
    return client


def api_client_for(user) -> APIClient:
    client = APIClient()
    _, raw = ApiToken.issue(user, "test")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def clients(viewer, operator, admin_user) -> dict[str, APIClient]:
    """API clients per role, each sending a real bearer token; ``anonymous`` sends none."""
    return {
        "anonymous": APIClient(),
        Role.VIEWER: api_client_for(viewer),
        Role.OPERATOR: api_client_for(operator),
        Role.ADMIN: api_client_for(admin_user),
    }


@pytest.fixture
def actor(operator) -> audit.Actor:
    return audit.Actor(operator, AuditSource.API)


@pytest.fixture
def cpu_node(db) -> Node:
    return Node.objects.create(hostname="cpu-host", cpu_cores=2, memory_bytes=24 * 2**30)


@pytest.fixture
def gpu_node(db) -> Node:
    node = Node.objects.create(hostname="gpu-host", cpu_cores=32, memory_bytes=256 * 2**30)
    for index in range(2):
        GPU.objects.create(
            node=node,
            index=index,
            uuid=f"GPU-{index:04d}",
            name="NVIDIA A100 80GB PCIe",
            memory_total_bytes=80 * 2**30,
            driver_version="550.54",
            cuda_version="12.4",
        )
    return node


@pytest.fixture
def model_version(actor, checkpoint):
    return registry.register_model_version(actor, name="demo", version="v1", artifact_path=str(checkpoint))


@pytest.fixture
def deployment(actor, model_version, cpu_node):
    return deployments.create_deployment(actor, name="demo-cpu", model_version=model_version, node=cpu_node)


def pytest_generate_tests(metafunc):
    """Parametrize ``bad_case`` from the test class's ``bad_cases`` (see api_contract.py)."""
    if "bad_case" in metafunc.fixturenames:
        cases = getattr(metafunc.cls, "bad_cases", {})
        metafunc.parametrize("bad_case", list(cases.items()), ids=list(cases))
