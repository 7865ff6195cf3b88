"""A node is known by the id its control plane keeps in VAR_DIR, not by its host name: renaming it keeps its
deployments. A deployment whose node has no control plane running says so (status, readiness, an alert)."""

from __future__ import annotations

import stat
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.alerts.service import evaluate_alert_rules
from controlplane.choices import AlertKind, AlertState, DeploymentStatus, Role
from controlplane.models import Alert, Deployment, Node
from controlplane.services import inventory


@pytest.fixture
def var_dir(tmp_path, settings):
    settings.VAR_DIR = tmp_path / "var"
    settings.NODE_NAME = "host-a"
    return settings.VAR_DIR


def test_the_node_id_is_written_once_readable_only_by_its_owner(var_dir):
    uid = inventory.local_node_uid()
    path = var_dir / "node_id"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert inventory.local_node_uid() == uid == uuid.UUID(path.read_text().strip())


def test_a_node_id_file_that_is_not_a_uuid_is_refused_with_its_path(var_dir):
    var_dir.mkdir(parents=True)
    (var_dir / "node_id").write_text("not-a-uuid\n")
    with pytest.raises(RuntimeError, match="node_id does not hold a node id"):
        inventory.local_node_uid()


@pytest.mark.django_db
def test_a_renamed_node_keeps_its_row_and_deployments_after_a_restart(var_dir, clients, deployment):
    node = inventory.register_local_node()
    Deployment.objects.filter(pk=deployment.pk).update(node=node)
    response = clients[Role.ADMIN].patch(f"/api/v1/nodes/{node.pk}/", {"hostname": "renamed"}, format="json")
    assert response.status_code == 200, response.content
    again = inventory.register_local_node()  # the next start, host name still host-a
    assert again.pk == node.pk and again.hostname == "renamed" and again.is_local
    assert Node.objects.filter(hostname="host-a").count() == 0
    assert Deployment.objects.get(pk=deployment.pk).node_id == node.pk


@pytest.mark.django_db
def test_the_first_start_with_an_id_claims_the_unclaimed_row_of_its_host_name(var_dir):
    before = Node.objects.create(hostname="host-a", cpu_cores=1, memory_bytes=2**30)
    node = inventory.register_local_node()
    assert node.pk == before.pk and node.uid == inventory.local_node_uid()


@pytest.mark.django_db
def test_a_new_node_whose_host_name_is_taken_by_another_node_gets_a_distinct_name(var_dir):
    Node.objects.create(hostname="host-a", cpu_cores=1, memory_bytes=2**30, uid=uuid.uuid4())
    node = inventory.register_local_node()
    assert node.hostname.startswith("host-a-") and Node.objects.count() == 2


def _stale(deployment, seconds):
    Node.objects.filter(pk=deployment.node_id).update(last_seen=timezone.now() - timedelta(seconds=seconds))


@pytest.mark.django_db
def test_a_deployment_on_a_node_without_a_control_plane_is_marked_and_named_in_readiness(var_dir, deployment):
    here = inventory.register_local_node()
    _stale(deployment, 600)
    assert inventory.heartbeat(here.pk, force=True)
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.DEGRADED
    assert "node cpu-host has no control plane running" in deployment.status_detail
    with pytest.raises(RuntimeError, match="demo-cpu: node cpu-host has no control plane running"):
        inventory.check_control_planes()
    here.refresh_from_db()
    assert timezone.now() - here.last_seen < timedelta(minutes=1)


@pytest.mark.django_db
def test_a_node_seen_recently_or_never_is_not_unattended(deployment):
    assert inventory.unattended_deployments() == []  # never seen: no heartbeat to miss
    _stale(deployment, 10)
    assert inventory.unattended_deployments() == []
    assert inventory.check_control_planes() == {"nodes_seen": 1}


@pytest.mark.django_db
def test_the_default_alert_fires_for_a_node_without_a_control_plane_and_resolves_when_it_is_back(deployment):
    _stale(deployment, 600)
    evaluate_alert_rules()
    alert = Alert.objects.get(kind=AlertKind.NODE_UNATTENDED)
    assert alert.state == AlertState.FIRING and "cpu-host" in alert.title
    _stale(deployment, 1)
    evaluate_alert_rules()
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED


def test_processes_starting_at_once_agree_on_one_node_id(var_dir):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: inventory.local_node_uid(), range(16)))
    assert len(ids) == 1 and sorted(p.name for p in var_dir.iterdir()) == ["node_id"]
