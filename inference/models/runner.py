"""Runners: a loaded model plus the KV state of the sequences it is decoding, behind one interface.

The engine talks to a runner only through ``add`` (prefill new sequences), ``decode`` (one token for every running
sequence), ``remove`` (a sequence leaves; optionally exporting its KV cache for a session) and ``score``.
A runner keeps ``seqs`` in batch-row order; each sequence object carries ``prompt_ids``, ``reuse_len`` (prompt
tokens whose KV comes from ``kv_import``), ``output_ids`` and ``kv_len`` (tokens currently in its cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from inference.models.kv import SlotKV
from inference.models.layers import CacheContext
from inference.models.moe import MoEModel
from inference.perplexity import score_windows, windows
from inference.precision import weight_bytes
from inference.tokenizer import ByteTokenizer, Tokenizer

FUSE_PAD_TOKENS = 512


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
        self.fused_passes = 0

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

    def can_fuse(self, seqs: list[Any]) -> bool:
        """Whether ``fused`` (prefill inside the decode forward pass) may be used; not by default."""
        return False

    # The interface the engine uses, implemented by each runner.

    def add(self, seqs: Sequence[RunnerSeq]) -> torch.Tensor:
        """Prefill new sequences after the running ones; logits [n, V] at each prompt's last token."""
        raise NotImplementedError

    def decode(self) -> torch.Tensor:
        """One token for each running sequence; logits [B, V]."""
        raise NotImplementedError

    def fused(self, seqs: Sequence[RunnerSeq]) -> torch.Tensor:
        """Decode the running rows and prefill ``seqs`` in one pass (only where ``can_fuse`` says so)."""
        raise NotImplementedError

    def export(self, seq: RunnerSeq) -> Any:
        """A copy of a running sequence's KV cache (the sequence stays in the batch)."""
        raise NotImplementedError

    def remove(self, seq: RunnerSeq, export: bool = False) -> Any:
        """Take a sequence out of the batch; its KV cache is returned when ``export``."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget every running sequence (after a failed step)."""
        raise NotImplementedError

    def kv_bytes(self) -> int:
        """Bytes held by the KV caches."""
        raise NotImplementedError

    @staticmethod
    def snapshot_bytes(snapshot: Any) -> int:
        """Bytes held by an exported KV cache."""
        raise NotImplementedError

    def score(self, token_lists: list[list[int]]) -> tuple[float, int]:
        """Summed NLL and token count of the token lists."""
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
    model: MoEModel

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
            logits: torch.Tensor = self.model(tokens, ctx, count=True, last_index=lens - 1)
            return logits

    def _rows(self, start: int, token_lists: list[list[int]], firsts: list[int]) -> torch.Tensor:
        """One forward over rows ``start ..``: row i feeds ``token_lists[i]`` from position ``firsts[i]``."""
        width = max(len(t) for t in token_lists)
        first = torch.tensor(firsts, device=self.device)
        positions = first[:, None] + torch.arange(width, device=self.device)[None]
        self.kv.reserve(start + len(token_lists), int(positions.max()) + 1)
        tokens = torch.full((len(token_lists), width), self.tokenizer.pad_id, dtype=torch.long)
        for i, ids in enumerate(token_lists):
            tokens[i, : len(ids)] = torch.tensor(ids)
        lens = torch.tensor([len(t) for t in token_lists], device=self.device)
        return self._forward(tokens.to(self.device), start, positions, lens)

    def _join(self, seqs: Sequence[RunnerSeq]) -> None:
        start = len(self.seqs)
        self.kv.reserve(start + len(seqs), max(s.reuse_len for s in seqs))
        for i, s in enumerate(seqs):
            if s.reuse_len:
                self.kv.load(start + i, s.kv_import, s.reuse_len)

    def _joined(self, seqs: Sequence[RunnerSeq]) -> None:
        for s in seqs:
            self.prefilled_tokens += len(s.prompt_ids) - s.reuse_len
            s.kv_len, s.kv_import = len(s.prompt_ids), None
        self.seqs.extend(seqs)

    def add(self, seqs: Sequence[RunnerSeq]) -> torch.Tensor:
        """Prefill new sequences into rows after the running ones; logits [n, V] at each prompt's last token."""
        self._join(seqs)
        logits = self._rows(len(self.seqs), [s.prompt_ids[s.reuse_len :] for s in seqs], [s.reuse_len for s in seqs])
        self._joined(seqs)
        return logits

    def decode(self) -> torch.Tensor:
        """Feed each running sequence its last output token; logits [B, V]."""
        logits = self._rows(0, [[s.output_ids[-1]] for s in self.seqs], [s.kv_len for s in self.seqs])
        for s in self.seqs:
            s.kv_len += 1
        return logits

    def can_fuse(self, seqs: Sequence[RunnerSeq]) -> bool:
        """Whether prefilling ``seqs`` in the decode step's forward pass is worth it: the running rows are padded
        to the longest new prompt, so only when that padding stays small."""
        width = max(len(s.prompt_ids) - s.reuse_len for s in seqs)
        return bool(self.seqs) and len(self.seqs) * (width - 1) <= FUSE_PAD_TOKENS

    def fused(self, seqs: Sequence[RunnerSeq]) -> torch.Tensor:
        """One forward pass that decodes the running rows and prefills ``seqs`` after them (a mixed batch, as in
        vLLM); logits [B + n, V]: next tokens of the running rows, then first tokens of the new ones."""
        old = list(self.seqs)
        self.fused_passes += 1
        self._join(seqs)
        lists = [[s.output_ids[-1]] for s in old] + [s.prompt_ids[s.reuse_len :] for s in seqs]
        logits = self._rows(0, lists, [s.kv_len for s in old] + [s.reuse_len for s in seqs])
        for s in old:
            s.kv_len += 1
        self._joined(seqs)
        return logits

    def export(self, seq: RunnerSeq) -> torch.Tensor | None:
        """A compact copy of a running sequence's KV cache (the sequence stays in the batch)."""
        row = next(i for i, s in enumerate(self.seqs) if s is seq)
        return self.kv.export(row, seq.kv_len) if seq.kv_len else None

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
