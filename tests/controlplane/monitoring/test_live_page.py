"""The live page (rendered by Django; the browser tests in tests/e2e drive its script) and GPU discovery."""

import json

from controlplane.models import GPU, AuditEvent, Node
from controlplane.monitoring.collectors.samples import GpuInfo, NvmlInventory
from controlplane.services.inventory import sync_local_gpus

from ..conftest import page_text


def _config(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="live-config" type="application/json">') + len(
        '<script id="live-config" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_the_live_page_needs_a_login(client, db):
    response = client.get("/live/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_live_page_subscribes_to_the_local_node_by_default(as_viewer, cpu_node):
    Node.objects.filter(pk=cpu_node.pk).update(is_local=True)
    response = as_viewer.get("/live/")
    assert response.status_code == 200
    config = _config(response)
    assert config["ws"] == f"/ws/metrics/?node={cpu_node.pk}" and config["deployment"] is None
    assert 'src="/static/vendor/uplot/uPlot.iife.min.js"' in response.content.decode()


def test_the_live_page_for_one_deployment(as_viewer, deployment):
    config = _config(as_viewer.get(f"/live/?deployment={deployment.pk}"))
    assert config["ws"] == f"/ws/metrics/?deployment={deployment.pk}"
    assert config["workers"] == {str(deployment.pk): deployment.name}


def test_an_unknown_scope_says_so_on_the_page_and_shows_this_node(as_viewer, cpu_node):
    text = page_text(as_viewer.get("/live/?deployment=9999"))
    assert "deployment: there is no deployment with id “9999”" in text
    assert "node: there is no node with id “abc”" in page_text(as_viewer.get("/live/?node=abc"))


def _inventory(*gpus: tuple[int, str]) -> NvmlInventory:
    infos = tuple(GpuInfo(index, uuid, "NVIDIA H100", 80 * 2**30) for index, uuid in gpus)
    return NvmlInventory(available=True, driver_version="550.54", cuda_version="12.4", gpus=infos)


def test_gpus_found_through_nvml_are_registered_once_and_kept_current(cpu_node):
    sync_local_gpus(cpu_node, _inventory((0, "GPU-a"), (1, "GPU-b")))
    sync_local_gpus(cpu_node, _inventory((0, "GPU-a"), (1, "GPU-b")))
    assert list(GPU.objects.filter(node=cpu_node).values_list("index", "uuid")) == [(0, "GPU-a"), (1, "GPU-b")]
    assert AuditEvent.objects.filter(action="gpu.create").count() == 2
    assert not AuditEvent.objects.filter(action="gpu.update").exists()
    # a new card in slot 1 takes over the slot's row (deployments bound to the slot stay bound)
    slot = GPU.objects.get(node=cpu_node, index=1)
    sync_local_gpus(cpu_node, _inventory((0, "GPU-a"), (1, "GPU-c")))
    slot.refresh_from_db()
    assert slot.uuid == "GPU-c" and AuditEvent.objects.filter(action="gpu.update").count() == 1
    # without NVML nothing changes
    assert sync_local_gpus(cpu_node, NvmlInventory(available=False, reason="no driver")) == []
    assert GPU.objects.filter(node=cpu_node).count() == 2


def test_the_live_page_carries_the_table_of_series(as_viewer, cpu_node):
    """live.js draws from this table (charts, legends, units), not from names of its own."""
    from controlplane.monitoring.series import page_table

    html = as_viewer.get("/live/").content.decode()
    start = html.index('<script id="live-series" type="application/json">') + len(
        '<script id="live-series" type="application/json">'
    )
    table = json.loads(html[start : html.index("</script>", start)])
    assert table == json.loads(json.dumps(page_table()))
    assert {"id": "worker-mem", "name": "worker_mem", "title": "Worker memory", "unit": "bytes"} in table["charts"]
