"""``/metrics``: authenticated, with GPU (DCGM style), worker (vLLM style), leak, gateway and process series, and
accepted by ``promtool check metrics``."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.monitoring import gateway_metrics
from controlplane.monitoring import service as service_module

from .test_gpu_prometheus import check_metrics
from .workers import Clock, StubWorker, make_service


@pytest.fixture
def collecting(running, cpu_node, monkeypatch):
    clock = Clock(time.time())
    service = make_service(cpu_node, StubWorker(), clock, [])
    service.tick()
    clock.t += 1
    service.tick()
    monkeypatch.setattr(service_module, "_current", service)
    gateway_metrics.requests.labels(running.name, "stable", "completions", "200").inc()
    gateway_metrics.e2e_latency.labels(running.name, "stable").observe(0.2)
    return service


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_needs_a_login_or_a_token(clients, collecting, as_viewer):
    assert clients["anonymous"].get("/metrics").status_code == 401
    assert as_viewer.get("/metrics").status_code == 200
    response = clients["viewer"].get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=0.0.4")


def test_metrics_export_gpu_worker_leak_gateway_and_process_series(clients, collecting, running):
    text = clients["viewer"].get("/metrics").content.decode()
    found = families(text)
    gpu = found["DCGM_FI_DEV_FB_USED"].samples[0]
    assert gpu.labels["gpu"] == "0" and gpu.labels["Hostname"] == "cpu-host"
    workers = {s.name: s for s in found["lcp_worker_num_requests_waiting"].samples}
    [waiting] = workers.values()
    assert waiting.labels == {"deployment": running.name, "model_name": "demo"} and waiting.value == 1
    assert found["lcp_worker_generation_tokens"].type == "counter"
    assert found["lcp_worker_sessions"].samples[0].value == 3
    assert found["lcp_worker_gpu_memory_used_bytes"].samples[0].value == 2 * 2**30
    shares = {s.labels["expert"]: s.value for s in found["lcp_worker_expert_activation_share"].samples}
    assert shares == {"0": 0.5, "1": 0.25, "2": 0.25}
    states = {s.labels["kind"]: s.value for s in found["lcp_memory_leak_state"].samples}
    assert states == {"rss_bytes": 0.0, "torch_allocated_bytes": 0.0, "gpu_mem_bytes": 0.0}
    assert "lcp_gateway_e2e_request_latency_seconds" in found and "process_resident_memory_bytes" in text
    assert found["lcp_metrics_collector_tick_cpu_seconds"].samples[0].value >= 0


def test_metrics_pass_promtool_check_metrics(clients, collecting):
    result = check_metrics(clients["viewer"].get("/metrics").content.decode())
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_a_collector_metrics_still_answer(clients, db):
    response = clients["viewer"].get("/metrics")
    assert response.status_code == 200 and b"lcp_worker_up" not in response.content


def test_a_worker_that_stops_answering_shows_as_down_and_its_pid_joins_gpu_series(
    clients, collecting, running, monkeypatch
):
    found = families(clients["viewer"].get("/metrics").content.decode())
    [info] = found["lcp_worker_info"].samples
    assert info.labels["pid"] == "4242" and info.labels["device"] == "cpu"
    processes = {s.labels["pid"] for s in found["lcp_gpu_process_memory_used_bytes"].samples}
    assert info.labels["pid"] in processes

    from controlplane.workers.client import WorkerUnavailable

    def down(timeout=None):
        raise WorkerUnavailable("connection refused")

    monkeypatch.setattr(collecting._client(running.pk, running.worker_url), "stats", down)
    collecting.collector._wall_clock = lambda: time.time() + 5
    collecting.tick()
    found = families(clients["viewer"].get("/metrics").content.decode())
    assert [(s.labels["deployment"], s.value) for s in found["lcp_worker_up"].samples] == [(running.name, 0.0)]


def test_prometheus_may_scrape_with_the_metrics_token_and_nothing_else(settings, clients, db):
    from rest_framework.test import APIClient

    settings.METRICS_TOKEN = "scrape-" + "s" * 40
    scraper = APIClient()
    scraper.credentials(HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}")
    assert scraper.get("/metrics").status_code == 200
    assert scraper.get("/api/v1/deployments/").status_code == 401  # only /metrics takes it
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Bearer scrape-wrong")
    assert wrong.get("/metrics").status_code == 401
    assert clients["viewer"].get("/metrics").status_code == 200  # API tokens still work


def test_every_worker_family_comes_from_a_series_the_service_keeps(collecting):
    """The worker families are the table's worker exports, filled from the series of the service's readings."""
    from controlplane.monitoring import series
    from controlplane.monitoring.prometheus import exposition

    text = exposition().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    [reading] = collecting.worker_readings()
    for name, value in reading.series.items():
        entry, parts = series.match(name)
        for export in entry.prometheus:
            family = families[export.name.removesuffix("_total") if export.type == "counter" else export.name]
            labels = {"deployment": reading.name, "model_name": "demo"}
            labels |= {part: str(parts[part]) for part in entry.parts if part != "deployment"}
            [sample] = [s for s in family.samples if s.name == export.name and s.labels == labels]
            assert sample.value == value * export.scale, name
