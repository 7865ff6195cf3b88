"""Building blocks of the native model: RMS norm, rotary embeddings, attention with a slot KV cache, MoE layer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inference.models.kv import SlotKV


@dataclass
class CacheContext:
    """Where a cached forward reads and writes keys/values.

    Rows of the batch are KV slots ``slot_start .. slot_start + B - 1`` (``rows[b, t]`` is the slot of row b);
    ``positions[b, t]`` is the absolute position of input token ``t`` of row ``b``; ``mask[b, 0, t, j]`` allows key
    ``j``; ``valid`` marks real (unpadded) tokens.
    """

    kv: SlotKV
    slot_start: int
    rows: torch.Tensor
    positions: torch.Tensor
    mask: torch.Tensor
    valid: torch.Tensor | None = None

    @property
    def key_len(self) -> int:
        """Number of key positions attended to."""
        return self.mask.shape[-1]


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


def rope_tables(head_dim: int, length: int, theta: float, device: torch.device | None = None) -> torch.Tensor:
    """cos/sin tables, shape [2, length, head_dim // 2], float32."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv)
    return torch.stack([angles.cos(), angles.sin()])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the two halves of each head; x [B, H, T, D], cos/sin [B, 1, T, D/2]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.to(x.dtype)


class Attention(nn.Module):
    """Multi-head attention with grouped-query key/value heads and an optional slot KV cache."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, layer: int) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, d_model // n_heads
        self.layer = layer
        self.wq = nn.Linear(d_model, n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(n_heads * self.head_dim, d_model, bias=False)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, n, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, ctx: CacheContext | None) -> torch.Tensor:
        b, t, _ = x.shape
        q = apply_rope(self._heads(self.wq(x), self.n_heads), cos, sin)
        k = apply_rope(self._heads(self.wk(x), self.n_kv_heads), cos, sin)
        v = self._heads(self.wv(x), self.n_kv_heads)
        gqa = self.n_kv_heads != self.n_heads
        if ctx is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            ctx.kv.write(self.layer, ctx.rows, ctx.positions, k, v)
            keys, values = ctx.kv.view(self.layer, ctx.slot_start, b, ctx.key_len)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=ctx.mask, enable_gqa=gqa)
        projected: torch.Tensor = self.wo(out.transpose(1, 2).reshape(b, t, -1))
        return projected


class Expert(nn.Module):
    """One SwiGLU feed-forward expert."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff, bias=False)
        self.w3 = nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.w2(F.silu(self.w1(x)) * self.w3(x))
        return out


class MoE(nn.Module):
    """A router picks the top-k of N experts per token; ``log_bias`` (log of router_weights) biases the choice.

    ``counts`` accumulates how many token-slots went to each expert (measured on every counted forward pass).
    """

    log_bias: torch.Tensor  # buffers (registered in __init__)
    counts: torch.Tensor

    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(Expert(d_model, d_ff) for _ in range(n_experts))
        self.register_buffer("log_bias", torch.zeros(n_experts), persistent=False)
        self.register_buffer("counts", torch.zeros(n_experts, dtype=torch.long), persistent=False)
        self.aux_loss: torch.Tensor | None = None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router logits (unbiased), chosen expert ids [N, k] and their gates [N, k]."""
        logits = self.router(x).float()
        top_val, top_idx = (logits + self.log_bias.float()).topk(self.top_k, dim=-1)
        return logits, top_idx, torch.softmax(top_val, dim=-1)

    def forward(self, x: torch.Tensor, count: bool = False) -> torch.Tensor:
        logits, top_idx, gates = self.route(x)
        flat = top_idx.reshape(-1)
        per_expert = torch.bincount(flat, minlength=len(self.experts))
        if count:
            self.counts += per_expert
        if self.training:
            self.aux_loss = self._balance_loss(logits, per_expert)
        order = flat.argsort(stable=True)
        token_of = order // self.top_k
        xs = x[token_of]
        outs, start = [], 0
        for expert, n in zip(self.experts, per_expert.tolist(), strict=True):
            if n:
                outs.append(expert(xs[start : start + n]))
            start += n
        weighted = torch.cat(outs) * gates.reshape(-1)[order].unsqueeze(-1).to(x.dtype)
        return torch.zeros_like(x).index_add_(0, token_of, weighted)

    def _balance_loss(self, logits: torch.Tensor, per_expert: torch.Tensor) -> torch.Tensor:
        """Switch-Transformer load-balancing loss: n_experts * sum(fraction routed * mean gate probability)."""
        frac = per_expert.float() / per_expert.sum().clamp(min=1)
        prob = torch.softmax(logits, dim=-1).mean(0)
        return len(self.experts) * (frac * prob).sum()
