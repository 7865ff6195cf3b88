"""The ``/control/stats`` document and expert activation shares, read from a running engine."""

from __future__ import annotations

from typing import Any

import torch

from inference.engine import Engine


def expert_shares(counts: torch.Tensor | None) -> dict[str, Any] | None:
    """Per-layer and overall share of token-slots each expert received (None for a dense model)."""
    if counts is None:
        return None
    counts = counts.double()
    per_layer = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    total = counts.sum(dim=0) / counts.sum().clamp(min=1)
    return {
        "layers": [[round(v, 6) for v in row] for row in per_layer.tolist()],
        "total": [round(v, 6) for v in total.tolist()],
        "tokens_routed": int(counts.sum()),
    }


def _largest_sessions(engine: Engine, n: int) -> dict[str, int]:
    """KV-cache bytes of the ``n`` sessions holding the most (``/control/sessions`` lists every session)."""
    return engine.sessions.largest(n)


def engine_stats(engine: Engine) -> dict[str, Any]:
    """Everything an operator looks at: memory, queue, throughput, sessions, experts, model and config."""
    now = engine.clock()
    lanes = engine.lanes()
    active = engine.active_lane()
    runner = active.runner if active else None
    kv_pool = sum(x.runner.kv_bytes() for x in lanes if x.runner.model is not None)
    session_counters = engine.sessions.counters()
    memory = engine.memory()
    return {
        **memory,
        "weight_bytes": sum(x.runner.weight_bytes() for x in lanes if x.runner.model is not None),
        "kv_cache_bytes": kv_pool + session_counters["session_kv_bytes"],
        "kv_pool_bytes": kv_pool,
        **session_counters,
        "session_kv_bytes_each": _largest_sessions(engine, 100),
        "queue_depth": engine.queue_depth(),
        "running": sum(len(x.runner.seqs) for x in lanes),
        **engine.counters.to_dict(now),
        "expert_activation_shares": expert_shares(runner.expert_counts()) if runner else None,
        "model": runner.info if runner else None,
        "device": str(runner.device) if runner else None,
        "precision": runner.precision if runner else None,
        "draining": [x.model_id for x in lanes if x.draining],
        "loading": engine.progress.to_dict(),
        "config": engine.config.to_dict(),
        "uptime_s": round(engine.uptime_s(), 3),
    }
