"""Adapter for local Hugging Face causal-LM checkpoints (optional: needs ``transformers``, the ``hf`` extra).

Each sequence keeps its own ``DynamicCache``; prefill and decode run one sequence at a time (the native model is
the one with batched math), so HF models get the same engine API, scheduling, sessions and metrics.
If the directory has no tokenizer files, the byte tokenizer is used (the model's vocabulary must then be >= 260).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from inference.errors import CheckpointError
from inference.models.runner import Runner, RunnerSeq
from inference.perplexity import score_windows, windows
from inference.tokenizer import ByteTokenizer, HFTokenizer, Tokenizer

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CheckpointError("transformers", "Hugging Face checkpoints need the 'hf' extra (transformers)") from exc
    return transformers


def load_tokenizer(path: Path, vocab_size: int) -> Tokenizer:
    """The checkpoint's own tokenizer, or the byte tokenizer when it ships none."""
    if any((path / name).is_file() for name in TOKENIZER_FILES):
        tok = _transformers().AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        return HFTokenizer(tok, vocab_size)
    if vocab_size < ByteTokenizer.vocab_size:
        raise CheckpointError(str(path), f"no tokenizer files and vocab_size={vocab_size} is too small for bytes")
    return ByteTokenizer()


def load_hf_model(path: Path, dtype: torch.dtype) -> torch.nn.Module:
    """``AutoModelForCausalLM.from_pretrained`` on local files only (nothing is downloaded)."""
    tf = _transformers()
    major, minor = (int(p) for p in tf.__version__.split(".")[:2])
    dtype_kw = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"  # renamed in transformers 4.56
    try:
        model: torch.nn.Module = tf.AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, **{dtype_kw: dtype}
        )
    except Exception as exc:  # transformers raises many types for bad checkpoints
        raise CheckpointError(str(path), f"cannot load Hugging Face model ({exc})") from exc
    return model.eval()


class HFRunner(Runner):
    """Runs a ``transformers`` causal LM with one DynamicCache per sequence."""

    kind = "hf"

    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer, device: torch.device, precision: str) -> None:
        super().__init__(model, tokenizer, device, precision)
        self.max_seq_len = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.caches: list[Any] = []

    def _new_cache(self) -> Any:
        cls = _transformers().DynamicCache
        try:
            return cls(config=self.model.config)
        except TypeError:
            return cls()

    def _step(self, cache: Any, ids: list[int]) -> torch.Tensor:
        tokens = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            out = self.model(input_ids=tokens, use_cache=True, **{self._cache_kw: cache})
        logits: torch.Tensor = out.logits[0, -1]
        return logits

    def add(self, seqs: Sequence[RunnerSeq]) -> torch.Tensor:
        """Prefill each new sequence (reusing an imported cache cropped to ``reuse_len``)."""
        rows, caches = [], []
        for s in seqs:
            cache = s.kv_import if s.reuse_len and s.kv_import is not None else self._new_cache()
            have = cache.get_seq_length()
            if have > s.reuse_len:
                cache.crop(s.reuse_len - have)
            rows.append(self._step(cache, s.prompt_ids[s.reuse_len :]))
            caches.append(cache)
        for s in seqs:
            s.kv_len, s.kv_import = len(s.prompt_ids), None
        self.prefilled_tokens += sum(len(s.prompt_ids) - s.reuse_len for s in seqs)
        self.seqs.extend(seqs)
        self.caches.extend(caches)
        return torch.stack(rows)

    def decode(self) -> torch.Tensor:
        """One token for each running sequence."""
        rows = [self._step(c, [s.output_ids[-1]]) for s, c in zip(self.seqs, self.caches, strict=True)]
        for s in self.seqs:
            s.kv_len += 1
        return torch.stack(rows)

    def export(self, seq: RunnerSeq) -> Any:
        """A copy of a running sequence's cache (the sequence stays in the batch)."""
        row = next(i for i, s in enumerate(self.seqs) if s is seq)
        return copy.deepcopy(self.caches[row])

    def remove(self, seq: RunnerSeq, export: bool = False) -> Any:
        """Take a sequence out; its cache object is handed over when ``export``."""
        row = next(i for i, s in enumerate(self.seqs) if s is seq)
        self.seqs.pop(row)
        cache = self.caches.pop(row)
        return cache if export else None

    def reset(self) -> None:
        """Forget every running sequence."""
        self.seqs, self.caches = [], []

    @staticmethod
    def snapshot_bytes(cache: Any) -> int:
        """Bytes held by a DynamicCache."""
        if cache is None:
            return 0
        total = 0
        for layer in getattr(cache, "layers", []):
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        return total

    def kv_bytes(self) -> int:
        """Bytes of the running sequences' caches."""
        return sum(self.snapshot_bytes(c) for c in self.caches)

    def close(self) -> None:
        self.caches = []
        super().close()

    def score(self, token_lists: list[list[int]]) -> tuple[float, int]:
        """Summed NLL and token count (right-padded batches with an attention mask)."""
        wins = windows(token_lists, self.max_seq_len)

        def logits(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.model(input_ids=tokens, attention_mask=mask.long()).logits
            return out

        with torch.inference_mode():
            return score_windows(logits, wins, self.tokenizer.pad_id, self.device)
