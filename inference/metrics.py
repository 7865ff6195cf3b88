"""Prometheus metrics in vLLM's style, prefix ``lcp_worker_``, on a registry of their own (one per app).

Counters and histograms are updated by engine events (``Observer``); gauges are read from the engine at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inference.batcher import Sequence
from inference.engine import Engine
from inference.lane import Observer
from inference.stats import BATCH_BUCKETS

P = "lcp_worker_"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _Gauges(Collector):
    """Gauges computed from the engine's state when Prometheus scrapes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(P + name, doc, value=value)

    def collect(self) -> Iterator[Metric]:
        e = self.engine
        lanes = e.lanes()
        live = [x for x in lanes if x.runner.model is not None]
        mem = e.memory()
        yield self._gauge("requests_running", "Sequences in the running batch.", sum(len(x.runner.seqs) for x in lanes))
        yield self._gauge("requests_waiting", "Requests queued for a batch slot.", e.queue_depth())
        kv = sum(x.runner.kv_bytes() for x in live) + e.sessions.kv_bytes
        yield self._gauge("kv_cache_bytes", "Bytes of KV cache (batch pool + idle sessions).", kv)
        yield self._gauge("sessions", "Open sessions.", len(e.sessions))
        yield self._gauge("process_resident_memory_bytes", "Resident set size of the worker.", mem["rss_bytes"])
        yield self._gauge("torch_allocated_bytes", "Allocated tensor bytes.", mem["torch_allocated_bytes"])
        yield self._gauge("torch_reserved_bytes", "Reserved allocator bytes.", mem["torch_reserved_bytes"])
        yield self._gauge("weight_bytes", "Bytes held by model weights.", sum(x.runner.weight_bytes() for x in live))
        yield from self._experts(e)
        info = GaugeMetricFamily(P + "model_info", "Loaded model (value 1).", labels=["model", "precision", "device"])
        for lane in live:
            info.add_metric([lane.model_id, lane.runner.precision, str(lane.runner.device)], 1.0)
        yield info

    def _experts(self, e: Engine) -> Iterator[Metric]:
        fam = GaugeMetricFamily(
            P + "expert_activation_share", "Share of routed token-slots per expert.", labels=["layer", "expert"]
        )
        lane = e.active_lane()
        counts = lane.runner.expert_counts() if lane is not None and lane.runner.model is not None else None
        if counts is not None:
            counts = counts.double()
            per_layer = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
            for layer, row in enumerate(per_layer.tolist()):
                for expert, share in enumerate(row):
                    fam.add_metric([str(layer), str(expert)], share)
            total = (counts.sum(0) / counts.sum().clamp(min=1)).tolist()
            for expert, share in enumerate(total):
                fam.add_metric(["all", str(expert)], share)
        yield fam


class WorkerMetrics(Observer):
    """The worker's metrics; attach with ``engine.observer = WorkerMetrics(engine)``."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram(
            P + "time_to_first_token_seconds", "Time to first token.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.e2e = Histogram(
            P + "e2e_request_latency_seconds", "End-to-end request latency.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.prompt_tokens = Counter(P + "prompt_tokens", "Prompt tokens processed.", registry=r)
        self.generation_tokens = Counter(P + "generation_tokens", "Tokens generated.", registry=r)
        self.success = Counter(P + "request_success", "Finished requests.", ["finished_reason"], registry=r)
        self.failure = Counter(P + "request_failure", "Requests that failed with an error.", registry=r)
        self.rejected_total = Counter(
            P + "requests_rejected", "Requests refused because the queue was full.", registry=r
        )
        self.batch_size = Histogram(P + "batch_size", "Sequences per forward pass.", buckets=BATCH_BUCKETS, registry=r)
        r.register(_Gauges(engine))

    def batch(self, size: int) -> None:
        self.batch_size.observe(size)
        self.generation_tokens.inc(size)

    def request_done(self, seq: Sequence, ok: bool, now: float) -> None:
        self.prompt_tokens.inc(len(seq.prompt_ids))
        self.e2e.observe(now - seq.arrival)
        if seq.first_token_at is not None:
            self.ttft.observe(seq.first_token_at - seq.arrival)
        if ok:
            self.success.labels(seq.finish_reason or "stop").inc()
        else:
            self.failure.inc()

    def rejected(self) -> None:
        self.rejected_total.inc()
