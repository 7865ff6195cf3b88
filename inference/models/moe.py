"""The native mixture-of-experts transformer language model."""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from inference.config import MoEConfig
from inference.models.layers import Attention, CacheContext, MoE, RMSNorm, rope_tables
from inference.protocol import check_router_weights


class Block(nn.Module):
    """Pre-norm attention, then a pre-norm MoE feed-forward layer."""

    def __init__(self, cfg: MoEConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg.d_model, cfg.n_heads, cfg.n_kv_heads, layer)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.moe = MoE(cfg.d_model, cfg.d_ff, cfg.n_experts, cfg.top_k)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, ctx: CacheContext | None, count: bool
    ) -> torch.Tensor:
        h: torch.Tensor = x + self.attn(self.attn_norm(x), cos, sin, ctx)
        y = self.ffn_norm(h)
        if ctx is not None and ctx.valid is not None:
            out = torch.zeros_like(y)
            out[ctx.valid] = self.moe(y[ctx.valid], count=count)
        else:
            out = self.moe(y.reshape(-1, y.shape[-1]), count=count).view_as(y)
        return h + out


class MoEModel(nn.Module):
    """Token embedding, ``n_layers`` blocks with a KV cache, final norm and an untied output head."""

    rope: torch.Tensor  # a buffer (registered in __init__)

    def __init__(self, cfg: MoEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.register_buffer("rope", rope_tables(cfg.head_dim, 2 * cfg.max_seq_len, cfg.rope_theta), persistent=False)

    def init_weights(self, generator: torch.Generator) -> None:
        """GPT-2 style init: normal(0, 0.02), output projections scaled by 1/sqrt(2 * n_layers)."""
        scaled = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue
            std = scaled if name.endswith(("wo.weight", "w2.weight")) else 0.02
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=generator) * std)

    def _rope_at(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if int(positions.max()) >= self.rope.shape[1]:
            self.rope = rope_tables(
                self.cfg.head_dim, 2 * int(positions.max()) + 2, self.cfg.rope_theta, self.rope.device
            )
        cos, sin = self.rope[0][positions], self.rope[1][positions]
        return cos.unsqueeze(1), sin.unsqueeze(1)

    def forward(
        self,
        tokens: torch.Tensor,
        ctx: CacheContext | None = None,
        count: bool = False,
        last_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for ``tokens`` [B, T]: [B, T, V], or [B, V] at ``last_index`` [B] when given."""
        positions = ctx.positions if ctx is not None else torch.arange(tokens.shape[1], device=tokens.device)[None]
        cos, sin = self._rope_at(positions)
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, ctx, count)
        if last_index is not None:
            x = x[torch.arange(x.shape[0], device=x.device), last_index]
        logits: torch.Tensor = self.lm_head(self.norm(x))
        return logits

    def blocks(self) -> list[Block]:
        """``layers``, typed as what they are."""
        return cast("list[Block]", list(self.layers))

    # -- router weights and activation counts -------------------------------------------------------------------

    def set_router_weights(self, weights: list[float] | None) -> None:
        """Multiply gate probabilities by ``weights`` (adds log(w) to router logits; w=0 never picks the expert)."""
        w = (
            [1.0] * self.cfg.n_experts
            if weights is None
            else check_router_weights(weights, self.cfg.n_experts, self.cfg.top_k)
        )
        for layer in self.blocks():
            bias = torch.tensor(w, dtype=torch.float32, device=layer.moe.log_bias.device).log()
            layer.moe.log_bias = bias.to(layer.moe.log_bias.dtype)

    def expert_counts(self) -> torch.Tensor:
        """Counts per [layer, expert] since the last reset (int64, CPU)."""
        return torch.stack([layer.moe.counts.detach().cpu() for layer in self.blocks()])

    def reset_expert_counts(self) -> None:
        """Zero the activation counters."""
        for layer in self.blocks():
            layer.moe.counts.zero_()

    def aux_loss(self) -> torch.Tensor:
        """Mean load-balancing loss of the last training forward."""
        losses = [layer.moe.aux_loss for layer in self.blocks() if layer.moe.aux_loss is not None]
        return torch.stack(losses).mean()


def state_shapes(cfg: MoEConfig) -> dict[str, list[int]]:
    """Tensor name -> shape of every weight a model of ``cfg`` stores (what a checkpoint must contain)."""
    d, hd = cfg.d_model, cfg.head_dim
    shapes = {"embed.weight": [cfg.vocab_size, d], "norm.weight": [d], "lm_head.weight": [cfg.vocab_size, d]}
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        shapes |= {
            p + "attn_norm.weight": [d],
            p + "attn.wq.weight": [cfg.n_heads * hd, d],
            p + "attn.wk.weight": [cfg.n_kv_heads * hd, d],
            p + "attn.wv.weight": [cfg.n_kv_heads * hd, d],
            p + "attn.wo.weight": [d, cfg.n_heads * hd],
            p + "ffn_norm.weight": [d],
            p + "moe.router.weight": [cfg.n_experts, d],
        }
        for e in range(cfg.n_experts):
            q = f"{p}moe.experts.{e}."
            shapes |= {q + "w1.weight": [cfg.d_ff, d], q + "w3.weight": [cfg.d_ff, d], q + "w2.weight": [d, cfg.d_ff]}
    return shapes
