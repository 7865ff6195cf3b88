"""The NVML collector, driven through the fake pynvml (and once through the real one, whatever this machine has)."""

import logging
import sys

import pynvml
import pytest

from controlplane.monitoring.collectors import NvmlCollector, format_cuda_version
from tests.fakes.pynvml_fake import (
    MISMATCH,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNKNOWN,
    FakeGpu,
    FakeNvml,
    GiB,
)

LOGGER = "controlplane.monitoring.collectors.nvml"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(fake: FakeNvml, **kwargs) -> tuple[NvmlCollector, Clock]:
    clock = Clock()
    return NvmlCollector(fake, monotonic=clock, wall_clock=lambda: 1_700_000_000.0, **kwargs), clock


def test_it_reads_every_field_of_every_gpu_in_base_units():
    fake = FakeNvml(
        [
            FakeGpu(
                name="NVIDIA H200",
                memory_total=141 * GiB,
                memory_used=40 * GiB,
                util_gpu=87,
                util_mem=45,
                temperature=61,
                power_mw=512_345,
                power_limit_mw=700_000,
                sm_clock=1980,
                mem_clock=3201,
                compute_processes={4242: 39 * GiB},
            ),
            FakeGpu(),
        ]
    )
    collector, _ = make(fake)
    first, second = collector.collect()
    assert first.index == 0 and second.index == 1
    assert first.uuid == "GPU-00000000-0000-0000-0000-000000000000"
    assert first.name == "NVIDIA H200"
    assert first.ts == 1_700_000_000.0
    assert (first.mem_total_bytes, first.mem_used_bytes, first.mem_free_bytes) == (141 * GiB, 40 * GiB, 101 * GiB)
    assert (first.util_gpu_pct, first.util_mem_pct) == (87.0, 45.0)
    assert first.temperature_c == 61.0
    assert first.power_w == pytest.approx(512.345)
    assert first.power_limit_w == 700.0
    assert (first.sm_clock_mhz, first.mem_clock_mhz) == (1980.0, 3201.0)
    assert first.processes == {4242: 39 * GiB}
    assert first.error is None and second.error is None


def test_it_follows_figures_that_change_between_ticks():
    fake = FakeNvml([FakeGpu(memory_used=GiB)])
    collector, _ = make(fake)
    assert collector.collect()[0].mem_used_bytes == GiB
    fake.gpus[0].memory_used = 3 * GiB
    fake.gpus[0].compute_processes = {7: 2 * GiB}
    sample = collector.collect()[0]
    assert sample.mem_used_bytes == 3 * GiB
    assert sample.processes == {7: 2 * GiB}


def test_it_counts_a_process_in_both_compute_and_graphics_lists_once_and_skips_unknown_usage():
    fake = FakeNvml([FakeGpu(compute_processes={1: 5 * GiB, 2: None}, graphics_processes={1: 5 * GiB, 3: GiB})])
    collector, _ = make(fake)
    assert collector.collect()[0].processes == {1: 5 * GiB, 3: GiB}


def test_it_falls_back_to_the_v2_process_call_when_the_driver_lacks_v3():
    fake = FakeNvml([FakeGpu(compute_processes={9: GiB}, errors={"nvmlDeviceGetComputeRunningProcesses": MISMATCH})])
    collector, _ = make(fake)
    sample = collector.collect()[0]
    assert sample.processes == {9: GiB}
    assert sample.error is None
    assert "nvmlDeviceGetComputeRunningProcesses_v2" in fake.calls


def test_a_field_the_gpu_does_not_support_is_missing_without_an_error():
    fake = FakeNvml([FakeGpu(errors={"nvmlDeviceGetPowerUsage": NVML_ERROR_NOT_SUPPORTED})])
    collector, _ = make(fake)
    sample = collector.collect()[0]
    assert sample.power_w is None
    assert sample.error is None
    assert sample.temperature_c == 35.0 and sample.power_limit_w == 700.0


def test_an_unknown_error_on_one_field_is_reported_and_the_other_fields_are_read():
    fake = FakeNvml([FakeGpu(errors={"nvmlDeviceGetTemperature": NVML_ERROR_UNKNOWN})])
    collector, _ = make(fake)
    sample = collector.collect()[0]
    assert sample.temperature_c is None
    assert sample.error == "temperature: NVMLError_Unknown: Unknown Error"
    assert sample.power_w == 70.0 and sample.sm_clock_mhz == 1980.0


def test_several_errors_on_one_gpu_are_all_reported():
    errors = {"nvmlDeviceGetTemperature": NVML_ERROR_UNKNOWN, "nvmlDeviceGetClockInfo": NVML_ERROR_NO_PERMISSION}
    collector, _ = make(FakeNvml([FakeGpu(errors=errors)]))
    error = collector.collect()[0].error
    assert "temperature: NVMLError_Unknown" in error
    assert "sm_clock: NVMLError_NoPermission" in error and "mem_clock: NVMLError_NoPermission" in error


def test_a_lost_gpu_is_reported_for_that_gpu_and_the_others_carry_on(caplog):
    fake = FakeNvml([FakeGpu(util_gpu=10), FakeGpu(errors={"*": NVML_ERROR_GPU_IS_LOST}), FakeGpu(util_gpu=30)])
    collector, _ = make(fake)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(3):
            samples = collector.collect()
    assert [s.util_gpu_pct for s in samples] == [10.0, None, 30.0]
    lost = samples[1]
    assert "NVMLError_GpuIsLost: GPU is lost" in lost.error
    assert lost.mem_used_bytes is None and lost.processes == {}
    assert samples[0].error is None and samples[2].error is None
    warnings = [r for r in caplog.records if "GPU is lost" in r.getMessage()]
    assert len(warnings) == 1, "a GPU's error is logged when it appears, not at every tick"
    assert collector.available


def test_a_gpu_that_is_lost_midway_keeps_what_was_read_before_and_stops_asking():
    fake = FakeNvml([FakeGpu(errors={"nvmlDeviceGetTemperature": NVML_ERROR_GPU_IS_LOST})])
    collector, _ = make(fake)
    sample = collector.collect()[0]
    assert sample.mem_used_bytes == GiB and sample.util_gpu_pct == 0.0
    assert sample.temperature_c is None and sample.power_w is None
    assert "nvmlDeviceGetPowerUsage" not in fake.calls


def test_a_gpu_that_comes_back_reads_normally_again(caplog):
    fake = FakeNvml([FakeGpu(errors={"*": NVML_ERROR_GPU_IS_LOST})])
    collector, _ = make(fake)
    assert collector.collect()[0].error is not None
    fake.gpus[0].errors.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        sample = collector.collect()[0]
    assert sample.error is None and sample.mem_used_bytes == GiB
    assert any("reads normally again" in r.getMessage() for r in caplog.records)


def test_a_gpu_whose_handle_cannot_be_had_at_start_is_reported_and_the_others_are_read():
    fake = FakeNvml([FakeGpu(errors={"nvmlDeviceGetHandleByIndex": NVML_ERROR_UNKNOWN}), FakeGpu(util_gpu=5)])
    collector, _ = make(fake)
    broken, fine = collector.collect()
    assert broken.index == 0 and "handle: NVMLError_Unknown" in broken.error and broken.uuid == ""
    assert fine.util_gpu_pct == 5.0 and fine.error is None
    assert [gpu.index for gpu in collector.discover().gpus] == [1]


def test_without_the_library_it_says_so_once_and_returns_nothing(caplog):
    fake = FakeNvml.without_library()
    collector, _ = make(fake)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        results = [collector.collect() for _ in range(100)]
    assert results == [[]] * 100
    assert collector.available is False
    assert collector.reason == "NVMLError_LibraryNotFound: NVML Shared Library Not Found"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "NVML is unavailable" in warnings[0].getMessage() and "LibraryNotFound" in warnings[0].getMessage()
    assert fake.calls.count("nvmlInit") == 1, "no retry at every tick"


def test_it_retries_after_the_interval_and_picks_up_a_driver_that_appears(caplog):
    fake = FakeNvml([FakeGpu()], init_error=NVML_ERROR_DRIVER_NOT_LOADED)
    collector, clock = make(fake, retry_interval_s=60)
    assert collector.collect() == []
    assert collector.reason == "NVMLError_DriverNotLoaded: Driver Not Loaded"
    clock.now += 59
    assert collector.collect() == []
    assert fake.calls.count("nvmlInit") == 1
    clock.now += 2
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert collector.collect() == []
    assert fake.calls.count("nvmlInit") == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "the same reason is not logged again"
    fake.init_error = None
    clock.now += 61
    samples = collector.collect()
    assert len(samples) == 1 and samples[0].error is None
    assert collector.available and collector.reason is None


def test_losing_the_driver_mid_run_makes_nvml_unavailable_and_it_is_retried_later():
    fake = FakeNvml([FakeGpu(), FakeGpu()])
    collector, clock = make(fake, retry_interval_s=30)
    assert len(collector.collect()) == 2
    for gpu in fake.gpus:
        gpu.errors["*"] = NVML_ERROR_DRIVER_NOT_LOADED
    assert collector.collect() == []
    assert collector.available is False
    assert "DriverNotLoaded" in collector.reason
    assert fake.calls.count("nvmlShutdown") == 1
    for gpu in fake.gpus:
        gpu.errors.clear()
    clock.now += 31
    assert len(collector.collect()) == 2


def test_without_the_pynvml_module_it_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes "import pynvml" raise ImportError
    collector = NvmlCollector()
    assert collector.collect() == []
    assert collector.available is False
    assert "pynvml module (package nvidia-ml-py) cannot be imported" in collector.reason


def test_it_discovers_driver_cuda_and_gpus_for_the_inventory():
    fake = FakeNvml(
        [FakeGpu(name="NVIDIA H200", memory_total=141 * GiB), FakeGpu(name="NVIDIA H200")],
        driver_version="550.54.15",
        cuda_driver_version=12040,
        bytes_strings=True,  # older pynvml releases return bytes
    )
    collector, _ = make(fake)
    inventory = collector.discover()
    assert inventory.available and inventory.reason is None
    assert (inventory.driver_version, inventory.cuda_version) == ("550.54.15", "12.4")
    assert [(g.index, g.name, g.memory_total_bytes) for g in inventory.gpus] == [
        (0, "NVIDIA H200", 141 * GiB),
        (1, "NVIDIA H200", 80 * GiB),
    ]
    assert inventory.gpus[1].uuid == "GPU-00000000-0000-0000-0000-000000000001"
    assert collector.collect()[0].name == "NVIDIA H200"


def test_discovery_without_the_library_reports_why():
    collector, _ = make(FakeNvml.without_library())
    inventory = collector.discover()
    assert inventory.available is False and "LibraryNotFound" in inventory.reason and inventory.gpus == ()


def test_a_version_nvml_cannot_give_is_left_empty_and_the_gpus_are_still_read():
    fake = FakeNvml([FakeGpu()], system_errors={"nvmlSystemGetCudaDriverVersion": NVML_ERROR_NOT_SUPPORTED})
    collector, _ = make(fake)
    inventory = collector.discover()
    assert inventory.cuda_version == "" and inventory.driver_version == "550.54.15"
    assert len(inventory.gpus) == 1


def test_shutdown_calls_nvml_shutdown_once_and_a_later_collect_starts_again():
    fake = FakeNvml([FakeGpu()])
    with NvmlCollector(fake) as collector:
        collector.collect()
        assert fake.init_count == 1
    assert fake.calls.count("nvmlShutdown") == 1 and fake.init_count == 0
    collector.shutdown()
    assert fake.calls.count("nvmlShutdown") == 1
    assert len(collector.collect()) == 1 and fake.init_count == 1
    collector.shutdown()


def test_shutdown_without_a_driver_calls_nothing():
    fake = FakeNvml.without_library()
    collector, _ = make(fake)
    collector.collect()
    collector.shutdown()
    assert "nvmlShutdown" not in fake.calls


def test_it_rejects_a_retry_interval_that_is_not_positive():
    with pytest.raises(ValueError, match="retry_interval_s must be positive, got 0"):
        NvmlCollector(FakeNvml(), retry_interval_s=0)


def test_cuda_driver_versions_are_written_as_nvidia_smi_writes_them():
    assert format_cuda_version(12040) == "12.4"
    assert format_cuda_version(11080) == "11.8"
    assert format_cuda_version(12020) == "12.2"
    assert format_cuda_version(0) == ""


def test_with_the_real_pynvml_it_either_reads_the_gpus_or_says_once_why_not(monkeypatch):
    """The real module, on whatever this machine is: no GPU here (the usual case) or a GPU host in CI."""
    inits = []
    real_init = pynvml.nvmlInit
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: (inits.append(1), real_init())[1])
    collector = NvmlCollector()
    try:
        first = collector.collect()
        for _ in range(50):
            collector.collect()
        if collector.available:
            assert first, "NVML initialised but listed no GPU"
            assert all(sample.uuid.startswith(("GPU-", "MIG-")) for sample in first)
            assert all(sample.mem_total_bytes for sample in first if sample.error is None)
        else:
            assert first == []
            assert collector.reason
            assert len(inits) == 1, "no retry at every tick"
    finally:
        collector.shutdown()
