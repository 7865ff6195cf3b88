"""Choosing the next token (greedy, temperature, top-p, penalties) and cutting output at stop strings.

Each request samples with its own ``torch.Generator`` (seeded when the request gives ``seed``), so its tokens do not
depend on which other requests share the batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch


@dataclass
class SamplingParams:
    """Per-request decoding settings (validated by the API layer)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    def generator(self) -> torch.Generator | None:
        """A CPU generator seeded from ``seed`` (random seed when none); None for greedy decoding."""
        if self.temperature == 0:
            return None
        gen = torch.Generator()
        if self.seed is None:
            gen.seed()
        else:
            gen.manual_seed(self.seed % (1 << 63))
        return gen


def _penalise(logits: torch.Tensor, params: SamplingParams, history: list[int]) -> torch.Tensor:
    if not history or (params.presence_penalty == 0 and params.frequency_penalty == 0):
        return logits
    counts = Counter(history)
    ids = torch.tensor(list(counts), dtype=torch.long)
    freq = torch.tensor(list(counts.values()), dtype=logits.dtype)
    logits = logits.clone()
    logits[ids] -= params.frequency_penalty * freq + params.presence_penalty
    return logits


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(descending=True)
    keep = sorted_p.cumsum(0) - sorted_p < top_p
    keep[0] = True
    filtered = torch.zeros_like(probs)
    filtered[order[keep]] = sorted_p[keep]
    return filtered / filtered.sum()


def sample_row(logits: torch.Tensor, params: SamplingParams, gen: torch.Generator | None, history: list[int]) -> int:
    """Next token id from one row of logits [V] (float32, on the CPU)."""
    logits = _penalise(logits, params, history)
    if params.temperature == 0 or gen is None:
        return int(logits.argmax())
    probs = torch.softmax(logits / params.temperature, dim=-1)
    probs = _top_p(probs, params.top_p)
    return int(torch.multinomial(probs, 1, generator=gen))


def sample_batch(
    logits: torch.Tensor, rows: list[tuple[SamplingParams, torch.Generator | None, list[int]]]
) -> list[int]:
    """Next token for every row; greedy rows without penalties are taken with one argmax."""
    logits = logits.float().cpu()
    greedy = logits.argmax(dim=-1).tolist()
    out = []
    for i, (params, gen, history) in enumerate(rows):
        plain = params.temperature == 0 and params.presence_penalty == 0 and params.frequency_penalty == 0
        out.append(greedy[i] if plain else sample_row(logits[i], params, gen, history))
    return out


class StopChecker:
    """Feeds text pieces; holds back any tail that could be the start of a stop string.

    ``push(piece)`` returns ``(text safe to emit, stopped)``; when stopped, the text up to (not including) the stop
    string has been emitted and the rest is dropped. ``flush()`` returns what was held back.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""

    def push(self, piece: str) -> tuple[str, bool]:
        if not self.stops:
            return piece, False
        text = self._held + piece
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self._held = ""
            return text[: min(hits)], True
        keep = self._partial_suffix(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def _partial_suffix(self, text: str) -> int:
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
