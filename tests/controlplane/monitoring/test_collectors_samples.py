"""Sample shapes: JSON-ready dicts, flat series with stable names, and the one-call LocalCollector."""

import json

from controlplane.monitoring.collectors import (
    GpuSample,
    HostCollector,
    HostSample,
    LocalCollector,
    NvmlCollector,
    ProcessSample,
    Snapshot,
    merge_series,
)
from tests.fakes.pynvml_fake import NVML_ERROR_GPU_IS_LOST, FakeGpu, FakeNvml, GiB


def gpu_sample(**overrides) -> GpuSample:
    fields = dict(
        index=0,
        uuid="GPU-1",
        name="NVIDIA H200",
        ts=10.0,
        util_gpu_pct=50.0,
        util_mem_pct=20.0,
        mem_total_bytes=100,
        mem_used_bytes=40,
        mem_free_bytes=60,
        temperature_c=55.0,
        power_w=300.5,
        power_limit_w=700.0,
        sm_clock_mhz=1980.0,
        mem_clock_mhz=3201.0,
        processes={4242: 30},
    )
    fields.update(overrides)
    return GpuSample(**fields)


def host_sample() -> HostSample:
    return HostSample(
        ts=10.0,
        cpu_pct=12.5,
        cpu_count=2,
        load1=0.5,
        load5=0.4,
        load15=0.3,
        mem_total_bytes=1000,
        mem_available_bytes=600,
        mem_used_bytes=400,
        swap_total_bytes=0,
        swap_used_bytes=0,
    )


def test_gpu_series_have_stable_names():
    assert gpu_sample(index=3).series() == {
        "gpu.3.util": 50.0,
        "gpu.3.mem_util": 20.0,
        "gpu.3.mem_total_bytes": 100.0,
        "gpu.3.mem_used_bytes": 40.0,
        "gpu.3.mem_free_bytes": 60.0,
        "gpu.3.temperature_c": 55.0,
        "gpu.3.power_w": 300.5,
        "gpu.3.power_limit_w": 700.0,
        "gpu.3.sm_clock_mhz": 1980.0,
        "gpu.3.mem_clock_mhz": 3201.0,
        "gpu.3.proc.4242.mem_used_bytes": 30.0,
    }


def test_a_reading_that_failed_is_absent_from_the_series_not_zero():
    series = gpu_sample(temperature_c=None, power_w=None, error="temperature: lost").series()
    assert "gpu.0.temperature_c" not in series and "gpu.0.power_w" not in series
    assert series["gpu.0.util"] == 50.0


def test_host_series_have_stable_names():
    assert host_sample().series() == {
        "host.cpu_pct": 12.5,
        "host.cpu_count": 2.0,
        "host.load1": 0.5,
        "host.load5": 0.4,
        "host.load15": 0.3,
        "host.mem_total_bytes": 1000.0,
        "host.mem_available_bytes": 600.0,
        "host.mem_used_bytes": 400.0,
        "host.swap_total_bytes": 0.0,
        "host.swap_used_bytes": 0.0,
    }


def test_process_series_take_a_prefix_for_the_role_of_the_process():
    sample = ProcessSample(pid=77, ts=1.0, rss_bytes=10, vms_bytes=20, cpu_pct=150.0, num_threads=8, num_fds=None)
    assert sample.series() == {
        "proc.77.rss_bytes": 10.0,
        "proc.77.vms_bytes": 20.0,
        "proc.77.cpu_pct": 150.0,
        "proc.77.num_threads": 8.0,
    }
    assert set(sample.series(prefix="worker.3")) == {
        "worker.3.rss_bytes",
        "worker.3.vms_bytes",
        "worker.3.cpu_pct",
        "worker.3.num_threads",
    }


def test_to_dict_is_json_ready_and_flat():
    gpu = gpu_sample().to_dict()
    assert gpu["processes"] == {"4242": 30}
    assert json.loads(json.dumps(gpu)) == gpu
    snapshot = Snapshot(ts=10.0, hostname="h", host=host_sample(), gpus=(gpu_sample(),), nvml_available=True)
    data = snapshot.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["gpus"][0]["uuid"] == "GPU-1" and data["host"]["cpu_pct"] == 12.5
    process = ProcessSample(pid=1, ts=1.0, gone=True).to_dict()
    assert process["gone"] is True and json.loads(json.dumps(process)) == process


def test_snapshot_series_merge_gpus_and_host():
    snapshot = Snapshot(ts=1.0, hostname="h", host=host_sample(), gpus=(gpu_sample(index=0), gpu_sample(index=1)))
    series = snapshot.series()
    assert series["gpu.1.util"] == 50.0 and series["host.cpu_pct"] == 12.5
    assert series == merge_series([gpu_sample(index=0), gpu_sample(index=1), host_sample()])


def test_local_collector_ticks_host_and_gpus_and_keeps_the_latest():
    fake = FakeNvml([FakeGpu(memory_used=2 * GiB), FakeGpu(errors={"*": NVML_ERROR_GPU_IS_LOST})])
    collector = LocalCollector(nvml=NvmlCollector(fake), hostname="node-a", wall_clock=lambda: 42.0)
    assert collector.latest_snapshot() is None
    snapshot = collector.tick()
    assert collector.latest is snapshot and collector.latest_snapshot() is snapshot
    assert (snapshot.ts, snapshot.hostname, snapshot.nvml_available) == (42.0, "node-a", True)
    assert snapshot.host is not None and snapshot.host.mem_total_bytes > 0
    assert snapshot.gpus[0].mem_used_bytes == 2 * GiB and snapshot.gpus[1].error
    assert "gpu.0.mem_used_bytes" in snapshot.series() and "host.mem_used_bytes" in snapshot.series()
    collector.close()
    assert fake.init_count == 0


def test_local_collector_without_nvml_still_reads_the_host():
    collector = LocalCollector(nvml=NvmlCollector(FakeNvml.without_library()))
    snapshot = collector.tick()
    assert snapshot.gpus == () and snapshot.nvml_available is False
    assert "LibraryNotFound" in snapshot.nvml_reason
    assert snapshot.host is not None


def test_local_collector_carries_on_with_the_gpus_when_the_host_reading_fails():
    class BrokenHost(HostCollector):
        def collect(self):
            raise OSError("no /proc")

    collector = LocalCollector(nvml=NvmlCollector(FakeNvml([FakeGpu()])), host=BrokenHost())
    snapshot = collector.tick()
    assert snapshot.host is None and len(snapshot.gpus) == 1
