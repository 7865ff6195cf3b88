"""The gateway's Prometheus series, in vLLM's style (base units, ``_total`` counters), per deployment and variant."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

registry = CollectorRegistry(auto_describe=True)
LABELS = ("deployment", "variant")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

requests = Counter(
    "lcp_gateway_requests",
    "Requests through the gateway, by outcome.",
    (*LABELS, "endpoint", "status"),
    registry=registry,
)
e2e_latency = Histogram(
    "lcp_gateway_e2e_request_latency_seconds",
    "From receiving a request to its last byte.",
    LABELS,
    buckets=LATENCY_BUCKETS,
    registry=registry,
)
ttft = Histogram(
    "lcp_gateway_time_to_first_token_seconds",
    "To the first generated token of a stream.",
    LABELS,
    buckets=LATENCY_BUCKETS,
    registry=registry,
)
prompt_tokens = Counter("lcp_gateway_prompt_tokens", "Prompt tokens of served requests.", LABELS, registry=registry)
generation_tokens = Counter(
    "lcp_gateway_generation_tokens", "Generated tokens of served requests.", LABELS, registry=registry
)
cache_lookups = Counter(
    "lcp_gateway_cache_lookups",
    "Response-cache lookups, by result (hit/miss).",
    ("deployment", "result"),
    registry=registry,
)
