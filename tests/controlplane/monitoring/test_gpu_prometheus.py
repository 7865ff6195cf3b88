"""Prometheus exposition of GPU and host series in the DCGM exporter's style; checked by the parser and promtool."""

import logging
import os
import shutil
import subprocess
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.monitoring.collectors import LocalCollector, NvmlCollector
from controlplane.monitoring.gpu_prometheus import DCGM_GAUGES, GpuHostMetricsCollector
from tests.fakes.pynvml_fake import (
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_NOT_SUPPORTED,
    FakeGpu,
    FakeNvml,
    GiB,
)

MiB = 1024 * 1024


def scrape(fake: FakeNvml, **kwargs) -> str:
    local = LocalCollector(nvml=NvmlCollector(fake), hostname="gpu-node-1")
    local.tick()
    time.sleep(0.05)  # the host's CPU share covers the time between two ticks
    local.tick()
    registry = CollectorRegistry()
    registry.register(GpuHostMetricsCollector(local.latest_snapshot, **kwargs))
    return generate_latest(registry).decode()


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def busy_node() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(
                name="NVIDIA H200",
                memory_total=141 * GiB,
                memory_used=40 * GiB,
                util_gpu=87,
                util_mem=45,
                temperature=61,
                power_mw=512_000,
                compute_processes={4242: 39 * GiB, 4243: GiB},
            ),
            FakeGpu(name="NVIDIA H200", errors={"nvmlDeviceGetPowerUsage": NVML_ERROR_NOT_SUPPORTED}),
            FakeGpu(name="NVIDIA H200", errors={"*": NVML_ERROR_GPU_IS_LOST}),
        ]
    )


def test_gpu_series_have_dcgm_names_labels_and_units():
    parsed = families(scrape(busy_node()))
    for name in DCGM_GAUGES:
        assert parsed[name].type == "gauge", name
    util = parsed["DCGM_FI_DEV_GPU_UTIL"].samples[0]
    assert util.labels == {
        "gpu": "0",
        "UUID": "GPU-00000000-0000-0000-0000-000000000000",
        "device": "nvidia0",
        "model_name": "NVIDIA H200",
        "Hostname": "gpu-node-1",
    }
    assert util.value == 87.0

    def value(name, gpu="0"):
        return next(s.value for s in parsed[name].samples if s.labels["gpu"] == gpu)

    assert value("DCGM_FI_DEV_FB_USED") == 40 * 1024  # MiB, as DCGM reports it
    assert value("DCGM_FI_DEV_FB_FREE") == 101 * 1024
    assert value("lcp_gpu_memory_used_bytes") == 40 * GiB
    assert value("lcp_gpu_memory_total_bytes") == 141 * GiB
    assert value("DCGM_FI_DEV_MEM_COPY_UTIL") == 45.0
    assert value("DCGM_FI_DEV_GPU_TEMP") == 61.0
    assert value("DCGM_FI_DEV_POWER_USAGE") == 512.0
    assert value("DCGM_FI_DEV_SM_CLOCK") == 1980.0 and value("DCGM_FI_DEV_MEM_CLOCK") == 2619.0


def test_per_process_gpu_memory_is_exported_in_bytes_with_the_pid():
    parsed = families(scrape(busy_node()))
    processes = {s.labels["pid"]: s.value for s in parsed["lcp_gpu_process_memory_used_bytes"].samples}
    assert processes == {"4242": 39 * GiB, "4243": GiB}


def test_a_reading_that_failed_is_left_out_and_a_lost_gpu_is_down():
    parsed = families(scrape(busy_node()))
    power = {s.labels["gpu"] for s in parsed["DCGM_FI_DEV_POWER_USAGE"].samples}
    assert power == {"0"}  # gpu 1 does not support it, gpu 2 is lost
    up = {s.labels["gpu"]: s.value for s in parsed["lcp_gpu_up"].samples}
    assert up == {"0": 1.0, "1": 1.0, "2": 0.0}
    assert [s.value for s in parsed["lcp_nvml_up"].samples] == [1.0]


def test_host_series_are_in_base_units():
    parsed = families(scrape(busy_node()))
    for name in ("lcp_host_memory_total_bytes", "lcp_host_memory_available_bytes", "lcp_host_memory_used_bytes"):
        [sample] = parsed[name].samples
        assert sample.labels == {"Hostname": "gpu-node-1"} and sample.value > 0
    [cpu] = parsed["lcp_host_cpu_usage_ratio"].samples
    assert 0.0 <= cpu.value <= 1.0
    assert parsed["lcp_host_cpus"].samples[0].value >= 1


def test_without_nvml_only_the_host_series_and_nvml_down_are_exported():
    parsed = families(scrape(FakeNvml.without_library()))
    assert [s.value for s in parsed["lcp_nvml_up"].samples] == [0.0]
    assert not any(name.startswith(("DCGM_", "lcp_gpu_")) for name in parsed)
    assert "lcp_host_memory_used_bytes" in parsed


def test_before_the_first_tick_nothing_is_exported_and_registration_checks_names():
    registry = CollectorRegistry()
    registry.register(GpuHostMetricsCollector(lambda: None))
    assert generate_latest(registry) == b""
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(GpuHostMetricsCollector(lambda: None))


def test_a_failing_provider_does_not_fail_the_scrape(caplog):
    def provider():
        raise RuntimeError("store is down")

    registry = CollectorRegistry()
    registry.register(GpuHostMetricsCollector(provider))
    with caplog.at_level(logging.ERROR):
        assert generate_latest(registry) == b""
    assert "provider failed" in caplog.text


def test_the_dcgm_model_name_label_can_be_switched_on():
    parsed = families(scrape(busy_node(), dcgm_model_name_label=True))
    labels = parsed["DCGM_FI_DEV_GPU_UTIL"].samples[0].labels
    assert labels["modelName"] == "NVIDIA H200" and labels["model_name"] == "NVIDIA H200"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("REQUIRE_PROMTOOL") == "1":
            pytest.fail("REQUIRE_PROMTOOL=1 but promtool is not on PATH (Debian: apt-get install prometheus)")
        pytest.skip(
            "promtool is not installed (Debian: apt-get install prometheus); REQUIRE_PROMTOOL=1 makes this fail"
        )
    return path


def check_metrics(text: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_exposition_passes_promtool_check_metrics():
    text = scrape(busy_node())
    assert "DCGM_FI_DEV_GPU_UTIL" in text and "lcp_host_cpu_usage_ratio" in text
    result = check_metrics(text)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_exposition_without_nvml_passes_promtool_check_metrics():
    result = check_metrics(scrape(FakeNvml.without_library()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_with_the_dcgm_model_name_label_promtools_only_complaint_is_its_camel_case():
    result = check_metrics(scrape(busy_node(), dcgm_model_name_label=True))
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert problems, "promtool no longer objects to modelName: make dcgm_model_name_label the default"
    assert all("label names should be written in 'snake_case' not 'camelCase'" in line for line in problems)
