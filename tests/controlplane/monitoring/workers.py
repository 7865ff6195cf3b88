"""A stub worker, a fake clock and a metrics service wired to fake NVML, for the monitoring tests."""

from __future__ import annotations

from controlplane.monitoring.collectors import HostCollector, LocalCollector, NvmlCollector
from controlplane.monitoring.service import MetricsService
from controlplane.monitoring.store import SampleStore
from tests.fakes.pynvml_fake import FakeGpu, FakeNvml, GiB

PID = 4242
MB = 1_000_000
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class StubWorker:
    """Answers ``stats()`` like a worker's /control/stats (what the service reads of it)."""

    def __init__(self, rss=lambda t: 300 * MB, kv=lambda t: 0.0):
        self.rss, self.kv, self.t = rss, kv, T0
        self.tokens = 0

    def stats(self, timeout=None) -> dict:
        self.tokens += 10
        return {
            "rss_bytes": self.rss(self.t),
            "torch_allocated_bytes": 7 * MB,
            "torch_reserved_bytes": 7 * MB,
            "kv_cache_bytes": self.kv(self.t),
            "weight_bytes": 50 * MB,
            "sessions": 3,
            "queue_depth": 1,
            "running": 2,
            "tokens_per_s": 12.5,
            "generation_tokens_total": self.tokens,
            "prompt_tokens_total": 2 * self.tokens,
            "requests_total": self.tokens // 10,
            "errors_total": 0,
            "rejected_total": 0,
            "batch_size_histogram": {"1": self.tokens // 10, "4": self.tokens // 5},
            "expert_activation_shares": {"total": [0.5, 0.25, 0.25]},
            "device": "cpu",
            "model": {"id": "demo"},
        }

    def close(self) -> None:
        pass


def make_service(node, worker: StubWorker, clock: Clock, published: list, gpus=None) -> MetricsService:
    fake = FakeNvml(gpus if gpus is not None else [FakeGpu(compute_processes={PID: 2 * GiB}), FakeGpu()])
    collector = LocalCollector(nvml=NvmlCollector(fake), host=HostCollector(), hostname=node.hostname, wall_clock=clock)
    service = MetricsService(node, collector=collector, store=SampleStore(3600), publish=published.append)
    service._client = lambda pk, url: worker
    return service
