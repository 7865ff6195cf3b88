"""Configuration dataclasses: every field has a default, a bound and a one-line docstring.

``MoEConfig`` describes a native model (it is what ``config.json`` of a checkpoint holds); ``WorkerConfig`` holds the
knobs an operator may change while the worker runs (``PATCH /control/config``). Bounds live in each field's metadata
so that validation, the control API's schema and the docs all read them from one place.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

MODEL_TYPE = "lcp-moe"
SCHEDULING_MODES = ("continuous", "static")


class ConfigError(ValueError):
    """A configuration value is out of bounds or inconsistent; ``param`` names the field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def knob(default: Any, lo: float | None, hi: float | None, doc: str, choices: tuple[str, ...] = ()) -> Any:
    """A dataclass field with its bounds (inclusive) and a one-line description."""
    return field(default=default, metadata={"min": lo, "max": hi, "doc": doc, "choices": choices})


def _check_field(name: str, meta: dict[str, Any], default: Any, value: Any) -> None:
    if meta.get("choices"):
        if value not in meta["choices"]:
            raise ConfigError(name, f"{name}={value!r} is not one of {list(meta['choices'])}")
        return
    if isinstance(default, bool) or (value is None and default is None):
        return
    want_int = isinstance(default, int)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or (want_int and not isinstance(value, int)):
        raise ConfigError(name, f"{name} must be {'an integer' if want_int else 'a number'}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(name, f"{name} must be finite, got {value!r}")
    lo, hi = meta["min"], meta["max"]
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(name, f"{name}={value!r} is out of range [{lo}, {hi}]")


def check_bounds(obj: Any, skip: tuple[str, ...] = ()) -> None:
    """Raise ConfigError for the first field of ``obj`` whose value breaks its bounds."""
    for f in fields(obj):
        if f.name not in skip and "doc" in f.metadata:
            _check_field(f.name, f.metadata, f.default, getattr(obj, f.name))


def describe(cls: type) -> dict[str, dict[str, Any]]:
    """Field name -> {default, min, max, doc, choices} for a config dataclass (the schema the control API shows)."""
    out = {}
    for f in fields(cls):
        if "doc" in f.metadata:
            meta = {k: v for k, v in f.metadata.items() if v not in (None, ())}
            out[f.name] = {"default": f.default, **meta}
    return out


@dataclass
class MoEConfig:
    """The architecture of a native mixture-of-experts language model."""

    vocab_size: int = knob(260, 2, 1 << 20, "Number of token ids (byte tokenizer: 256 bytes + 4 specials).")
    d_model: int = knob(128, 8, 16384, "Width of the residual stream.")
    n_layers: int = knob(4, 1, 256, "Number of transformer blocks.")
    n_heads: int = knob(4, 1, 256, "Attention query heads per block.")
    n_kv_heads: int = knob(2, 1, 256, "Key/value heads per block (grouped-query attention when < n_heads).")
    d_ff: int = knob(128, 4, 65536, "Hidden size of each expert's SwiGLU feed-forward network.")
    n_experts: int = knob(8, 1, 1024, "Experts per MoE layer.")
    top_k: int = knob(2, 1, 64, "Experts the router picks for each token.")
    max_seq_len: int = knob(256, 8, 1 << 20, "Longest context (prompt + generated tokens) in tokens.")
    rope_theta: float = knob(10000.0, 1.0, 1e9, "Base of the rotary position embedding.")
    norm_eps: float = knob(1e-5, 1e-12, 1e-1, "Epsilon of the RMS norms.")
    tokenizer: str = knob("byte", None, None, "Tokenizer of the model.", choices=("byte",))
    torch_dtype: str = knob("float32", None, None, "dtype of the stored weights.", choices=("float32", "bfloat16"))

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.d_model % self.n_heads:
            raise ConfigError("n_heads", f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError("n_kv_heads", f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}")
        if self.top_k > self.n_experts:
            raise ConfigError("top_k", f"top_k={self.top_k} exceeds n_experts={self.n_experts}")
        if (self.d_model // self.n_heads) % 2:
            raise ConfigError("n_heads", f"head_dim={self.d_model // self.n_heads} must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    def to_json(self) -> dict[str, Any]:
        """The ``config.json`` form (with ``model_type``)."""
        return {"model_type": MODEL_TYPE, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MoEConfig:
        """Build from a ``config.json`` dict; unknown keys (quality, training, ...) are ignored."""
        if data.get("model_type") != MODEL_TYPE:
            raise ConfigError("model_type", f"model_type={data.get('model_type')!r} is not {MODEL_TYPE!r}")
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise ConfigError("config", f"bad config.json: {exc}") from exc


GiB = 1 << 30


@dataclass
class WorkerConfig:
    """Live-tunable serving knobs (``GET``/``PATCH /control/config``)."""

    max_batch_size: int = knob(32, 1, 1024, "Most sequences decoded together in one engine step.")
    max_wait_ms: float = knob(
        0.0, 0.0, 10_000.0, "How long an idle engine holds a new batch open for more requests (0: never wait)."
    )
    max_queue: int = knob(256, 1, 1_000_000, "Requests that may wait for a batch slot; past it requests get 429.")
    prefill_token_budget: int = knob(2048, 1, 1 << 24, "Most prompt tokens prefilled in one engine step.")
    scheduling: str = knob(
        "continuous",
        None,
        None,
        "continuous: requests join/leave the batch between steps; static: a new batch starts when the last ends.",
        choices=SCHEDULING_MODES,
    )
    max_tokens_limit: int = knob(1024, 1, 1 << 20, "Largest max_tokens a request may ask for.")
    default_max_tokens: int = knob(64, 1, 1 << 20, "max_tokens used when a request gives none.")
    session_timeout_s: float = knob(600.0, 0.001, 30 * 86400.0, "Idle seconds after which a session expires.")
    session_sweep_interval_s: float = knob(5.0, 0.01, 3600.0, "How often the engine looks for expired sessions.")
    max_sessions: int = knob(4096, 1, 10_000_000, "Most sessions kept; least recently used idle ones are evicted.")
    max_session_kv_bytes: int = knob(
        1 * GiB, 0, 1 << 44, "Cap on KV-cache bytes idle sessions hold together; LRU sessions are evicted past it."
    )
    stall_timeout_s: float = knob(30.0, 0.01, 86400.0, "An engine step running longer than this turns /health 503.")
    drain_timeout_s: float = knob(300.0, 0.0, 86400.0, "How long swap/unload wait for requests in flight to finish.")
    max_body_bytes: int = knob(1 << 20, 1024, 1 << 30, "Largest HTTP request body accepted (413 past it).")
    router_weights: list[float] | None = knob(  # noqa: RUF009 - knob() returns a dataclasses.field
        None, None, None, "Per-expert multipliers of the router's gate probabilities (None: all 1.0)."
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check bounds and cross-field rules; ConfigError quotes the offending values."""
        check_bounds(self, skip=("router_weights",))
        if self.default_max_tokens > self.max_tokens_limit:
            raise ConfigError(
                "default_max_tokens",
                f"default_max_tokens={self.default_max_tokens} exceeds max_tokens_limit={self.max_tokens_limit}",
            )
        if self.router_weights is not None:
            check_router_weights_shape(self.router_weights)

    def updated(self, changes: dict[str, Any]) -> WorkerConfig:
        """A validated copy with ``changes`` applied; unknown keys raise ConfigError naming them."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(unknown[0], f"unknown config field(s): {', '.join(unknown)}")
        new = replace(self, **changes)
        if new.router_weights is not None:
            new.router_weights = [float(w) for w in new.router_weights]
        return new

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)


def check_router_weights_shape(weights: Any) -> None:
    """Type checks that need no model: a list of finite, non-negative numbers."""
    if not isinstance(weights, list) or not weights:
        raise ConfigError("router_weights", f"router_weights must be a non-empty list of numbers, got {weights!r}")
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, int | float):
            raise ConfigError("router_weights", f"router_weights[{i}]={w!r} is not a number")
        if not math.isfinite(w) or w < 0:
            raise ConfigError("router_weights", f"router_weights[{i}]={w!r} must be finite and >= 0")


def check_router_weights(weights: list[float], n_experts: int, top_k: int) -> list[float]:
    """Validate router weights against a model: right length, finite, >= 0, at least top_k positive."""
    check_router_weights_shape(weights)
    if len(weights) != n_experts:
        raise ConfigError(
            "router_weights", f"router_weights has {len(weights)} entries but the model has {n_experts} experts"
        )
    positive = sum(1 for w in weights if w > 0)
    if positive < top_k:
        raise ConfigError(
            "router_weights", f"router_weights has {positive} positive entries; at least top_k={top_k} are needed"
        )
    return [float(w) for w in weights]
