"""Collector cost per tick and Prometheus exposition time. Prints figures; asserts nothing.

Run from the repository root: `.venv/bin/python bench/bench_collectors.py` (or `make bench`).
The NVML figures use the fake pynvml (8 GPUs): they measure this code's own overhead, not the driver's time,
which on a real GPU host adds the cost of each NVML call (run the real-NVML line there to see it).
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry, generate_latest

from controlplane.monitoring.collectors import (
    HostCollector,
    LocalCollector,
    NvmlCollector,
    ProcessCollector,
)
from controlplane.monitoring.gpu_prometheus import GpuHostMetricsCollector
from tests.fakes.pynvml_fake import FakeGpu, FakeNvml, GiB


def per_call(fn, n: int) -> tuple[float, float]:
    """(CPU microseconds, wall microseconds) per call, mean over n calls after a warm-up."""
    for _ in range(min(n, 20)):
        fn()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    return (cpu1 - cpu0) / n * 1e6, (wall1 - wall0) / n * 1e6


def fake_gpus(count: int, processes: int) -> list[FakeGpu]:
    return [
        FakeGpu(memory_used=(i + 1) * GiB, compute_processes={1000 * i + p: GiB for p in range(processes)})
        for i in range(count)
    ]


def row(label: str, cpu_us: float, wall_us: float) -> None:
    print(f"{label:<62} {cpu_us:>10.1f} {wall_us:>10.1f}")


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'per tick':<62} {'CPU us':>10} {'wall us':>10}")
    nvml = NvmlCollector(FakeNvml(fake_gpus(8, 2)))
    row("NVML collect, fake pynvml, 8 GPUs x 2 processes", *per_call(nvml.collect, 2000))
    no_driver = NvmlCollector()  # the real pynvml
    no_driver.collect()
    label = "NVML collect, real pynvml" + (" (NVML up)" if no_driver.available else " (no driver: returns at once)")
    row(label, *per_call(no_driver.collect, 2000))
    host = HostCollector()
    row("host collect, real psutil", *per_call(host.collect, 2000))
    process = ProcessCollector(os.getpid())
    row("process collect (this process), real psutil", *per_call(process.collect, 2000))
    local = LocalCollector(nvml=NvmlCollector(FakeNvml(fake_gpus(8, 2))), host=HostCollector())
    row("LocalCollector.tick: host + 8 fake GPUs", *per_call(local.tick, 2000))
    snapshot = local.tick()
    row("Snapshot.series() (8 GPUs + host)", *per_call(snapshot.series, 2000))
    row("Snapshot.to_dict() (8 GPUs + host)", *per_call(snapshot.to_dict, 2000))
    no_driver.shutdown()

    print()
    big = LocalCollector(nvml=NvmlCollector(FakeNvml(fake_gpus(64, 3))), host=HostCollector())
    big.tick()
    time.sleep(0.05)
    big.tick()
    registry = CollectorRegistry()
    registry.register(GpuHostMetricsCollector(big.latest_snapshot))
    text = generate_latest(registry).decode()
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    times = []
    for _ in range(200):
        started = time.perf_counter()
        generate_latest(registry)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    print(
        f"/metrics generation, {series} series (64 GPUs x 3 processes + host): "
        f"median {statistics.median(times):.2f} ms, p99 {times[int(len(times) * 0.99) - 1]:.2f} ms, "
        f"{len(text) / 1024:.0f} KiB (target: under 50 ms)"
    )
    small = CollectorRegistry()
    small.register(GpuHostMetricsCollector(local.latest_snapshot))
    small_series = sum(1 for line in generate_latest(small).decode().splitlines() if line and not line.startswith("#"))
    row(
        f"/metrics generation, {small_series} series (8 GPUs + host), per scrape",
        *per_call(lambda: generate_latest(small), 500),
    )


if __name__ == "__main__":
    main()
