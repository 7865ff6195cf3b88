"""Runners: a loaded model plus the KV state of the sequences it is decoding, behind one interface.

The engine talks to a runner only through ``add`` (prefill new sequences), ``decode`` (one token for every running
sequence), ``remove`` (a sequence leaves; optionally exporting its KV cache for a session) and ``score``.
A runner keeps ``seqs`` in batch-row order; each sequence object carries ``prompt_ids``, ``reuse_len`` (prompt
tokens whose KV comes from ``kv_import``), ``output_ids`` and ``kv_len`` (tokens currently in its cache).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from inference.models.kv import SlotKV
from inference.models.layers import CacheContext
from inference.models.moe import MoEModel
from inference.perplexity import score_windows, windows
from inference.precision import weight_bytes
from inference.tokenizer import ByteTokenizer, Tokenizer


class RunnerSeq(Protocol):
    """What a runner reads and writes on a sequence."""

    prompt_ids: list[int]
    reuse_len: int
    kv_import: Any
    output_ids: list[int]
    kv_len: int


class Runner:
    """Shared parts of the native and Hugging Face runners."""

    kind = "base"
    supports_router_weights = False

    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer, device: torch.device, precision: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.precision = precision
        self.seqs: list[Any] = []
        self.max_seq_len = 0
        self.info: dict[str, Any] = {}
        self.prefilled_tokens = 0

    def weight_bytes(self) -> int:
        """Bytes held by parameters and persistent buffers."""
        return weight_bytes(self.model)

    def expert_counts(self) -> torch.Tensor | None:
        """Activation counts [layer, expert], or None for a dense model."""
        return None

    def reset_expert_counts(self) -> None:
        """Zero the activation counters (no-op without experts)."""

    def set_router_weights(self, weights: list[float] | None) -> None:
        """Router weights are only meaningful for the native MoE model."""
        raise NotImplementedError

    def trim(self) -> None:
        """Release idle KV memory (nothing to do by default)."""

    def close(self) -> None:
        """Drop the model and every cache so their memory can be freed."""
        self.seqs = []
        self.model = None  # type: ignore[assignment]

    def chat_prompt(self, messages: list[dict[str, str]]) -> str | None:
        """The tokenizer's own chat template, if any (None: use the worker's plain template)."""
        fn = getattr(self.tokenizer, "chat_prompt", None)
        return fn(messages) if fn else None


def _key_mask(positions: torch.Tensor, key_len: int) -> torch.Tensor:
    """[B, 1, T, key_len] bool: query at absolute position p may attend keys 0..p."""
    keys = torch.arange(key_len, device=positions.device)
    return (keys[None, None, :] <= positions[:, :, None]).unsqueeze(1)


class NativeRunner(Runner):
    """Runs the native MoE model with a compact slot KV pool (batched prefill and batched decode)."""

    kind = "moe"
    supports_router_weights = True

    def __init__(self, model: MoEModel, device: torch.device, precision: str, kv_dtype: torch.dtype) -> None:
        super().__init__(model, ByteTokenizer(), device, precision)
        cfg = model.cfg
        self.cfg = cfg
        self.max_seq_len = cfg.max_seq_len
        self.kv = SlotKV(cfg.n_layers, cfg.n_kv_heads, cfg.head_dim, kv_dtype, device)

    def _forward(self, tokens: torch.Tensor, start: int, positions: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        b, t = tokens.shape
        key_len = int(positions.max()) + 1
        self.kv.reserve(start + b, key_len)
        rows = (start + torch.arange(b, device=self.device))[:, None].expand(b, t)
        valid = torch.arange(t, device=self.device)[None] < lens[:, None] if int(lens.min()) < t else None
        ctx = CacheContext(self.kv, start, rows, positions, _key_mask(positions, key_len), valid)
        with torch.inference_mode():
            return self.model(tokens, ctx, count=True, last_index=lens - 1)

    def add(self, seqs: list[RunnerSeq]) -> torch.Tensor:
        """Prefill new sequences into rows after the running ones; logits [n, V] at each prompt's last token."""
        start, news = len(self.seqs), [s.prompt_ids[s.reuse_len :] for s in seqs]
        width = max(len(n) for n in news)
        firsts = torch.tensor([s.reuse_len for s in seqs], device=self.device)
        positions = firsts[:, None] + torch.arange(width, device=self.device)[None]
        self.kv.reserve(start + len(seqs), int(positions.max()) + 1)
        tokens = torch.full((len(seqs), width), self.tokenizer.pad_id, dtype=torch.long)
        for i, (s, new) in enumerate(zip(seqs, news, strict=True)):
            tokens[i, : len(new)] = torch.tensor(new)
            if s.reuse_len:
                self.kv.load(start + i, s.kv_import, s.reuse_len)
        lens = torch.tensor([len(n) for n in news], device=self.device)
        logits = self._forward(tokens.to(self.device), start, positions, lens)
        for s in seqs:
            s.kv_len, s.kv_import = len(s.prompt_ids), None
        self.prefilled_tokens += sum(len(n) for n in news)
        self.seqs.extend(seqs)
        return logits

    def decode(self) -> torch.Tensor:
        """Feed each running sequence its last output token; logits [B, V]."""
        tokens = torch.tensor([[s.output_ids[-1]] for s in self.seqs], device=self.device)
        positions = torch.tensor([[s.kv_len] for s in self.seqs], device=self.device)
        ones = torch.ones(len(self.seqs), dtype=torch.long, device=self.device)
        logits = self._forward(tokens, 0, positions, ones)
        for s in self.seqs:
            s.kv_len += 1
        return logits

    def remove(self, seq: RunnerSeq, export: bool = False) -> torch.Tensor | None:
        """Take a sequence out of the batch; its KV cache is returned (a compact copy) when ``export``."""
        row = next(i for i, s in enumerate(self.seqs) if s is seq)
        snapshot = self.kv.export(row, seq.kv_len) if export and seq.kv_len else None
        last = len(self.seqs) - 1
        if row != last:
            self.kv.move(last, row, self.seqs[last].kv_len)
            self.seqs[row] = self.seqs[last]
        self.seqs.pop()
        return snapshot

    def reset(self) -> None:
        """Forget every running sequence (after a failed step)."""
        self.seqs = []

    def kv_bytes(self) -> int:
        """Bytes of the KV pool."""
        return self.kv.nbytes

    @staticmethod
    def snapshot_bytes(snapshot: torch.Tensor | None) -> int:
        """Bytes held by an exported KV cache."""
        return 0 if snapshot is None else snapshot.numel() * snapshot.element_size()

    def trim(self) -> None:
        """Free the KV pool when no sequence is running."""
        if not self.seqs:
            self.kv.release()

    def close(self) -> None:
        self.kv.release()
        super().close()

    def score(self, token_lists: list[list[int]]) -> tuple[float, int]:
        """Summed NLL and token count of the token lists (uncached forward, activations not counted)."""
        wins = windows(token_lists, self.max_seq_len)
        with torch.inference_mode():
            return score_windows(lambda t, _m: self.model(t), wins, self.tokenizer.pad_id, self.device)

    def expert_counts(self) -> torch.Tensor:
        return self.model.expert_counts()

    def reset_expert_counts(self) -> None:
        self.model.reset_expert_counts()

    def set_router_weights(self, weights: list[float] | None) -> None:
        self.model.set_router_weights(weights)
