"""``MoEConfig``: the architecture of a native model (what ``config.json`` of a checkpoint holds).

Its fields are declared like the worker's settings (``inference.protocol.setting``): a default, bounds and a
one-line doc each. The worker's serving settings are the worker contract's, in ``inference/protocol.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from inference.protocol import ConfigError, check_bounds, setting

MODEL_TYPE = "lcp-moe"


@dataclass
class MoEConfig:
    """The architecture of a native mixture-of-experts language model."""

    vocab_size: int = setting(260, "Number of token ids (byte tokenizer: 256 bytes + 4 specials).", lo=2, hi=1 << 20)
    d_model: int = setting(128, "Width of the residual stream.", lo=8, hi=16384)
    n_layers: int = setting(4, "Number of transformer blocks.", lo=1, hi=256)
    n_heads: int = setting(4, "Attention query heads per block.", lo=1, hi=256)
    n_kv_heads: int = setting(2, "Key/value heads per block (grouped-query attention when < n_heads).", lo=1, hi=256)
    d_ff: int = setting(128, "Hidden size of each expert's SwiGLU feed-forward network.", lo=4, hi=65536)
    n_experts: int = setting(8, "Experts per MoE layer.", lo=1, hi=1024)
    top_k: int = setting(2, "Experts the router picks for each token.", lo=1, hi=64)
    max_seq_len: int = setting(256, "Longest context (prompt + generated tokens).", lo=8, hi=1 << 20, unit="tokens")
    rope_theta: float = setting(10000.0, "Base of the rotary position embedding.", lo=1.0, hi=1e9)
    norm_eps: float = setting(1e-5, "Epsilon of the RMS norms.", lo=1e-12, hi=1e-1)
    tokenizer: str = setting("byte", "Tokenizer of the model.", choices=("byte",))
    torch_dtype: str = setting("float32", "dtype of the stored weights.", choices=("float32", "bfloat16"))

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
