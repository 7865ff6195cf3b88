"""Held-out scoring: each text is ``<bos> tokens <eos>``, cut into windows of at most ``max_len`` predicted tokens.

The same windows are used when training records ``quality.heldout_perplexity`` and when ``/control/perplexity``
scores texts through a loaded model, so the two figures are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Window = tuple[list[int], list[int]]
LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def windows(token_lists: list[list[int]], max_len: int) -> list[Window]:
    """(inputs, targets) pairs covering every next-token prediction of every token list."""
    out = []
    for ids in token_lists:
        for start in range(0, len(ids) - 1, max_len):
            chunk = ids[start : start + max_len + 1]
            if len(chunk) >= 2:
                out.append((chunk[:-1], chunk[1:]))
    return out


def score_windows(
    logits_fn: LogitsFn, wins: list[Window], pad_id: int, device: torch.device, batch: int = 16
) -> tuple[float, int]:
    """(summed negative log-likelihood in nats, number of predicted tokens) over the windows.

    ``logits_fn(tokens [B, T], attention_mask [B, T])`` returns logits [B, T, V]; windows are right-padded.
    """
    order = sorted(range(len(wins)), key=lambda i: len(wins[i][0]))
    nll, count = 0.0, 0
    for i in range(0, len(order), batch):
        group = [wins[j] for j in order[i : i + batch]]
        width = max(len(inp) for inp, _ in group)
        tokens = torch.full((len(group), width), pad_id, dtype=torch.long)
        targets = torch.full((len(group), width), -100, dtype=torch.long)
        for row, (inp, tgt) in enumerate(group):
            tokens[row, : len(inp)] = torch.tensor(inp)
            targets[row, : len(tgt)] = torch.tensor(tgt)
        mask = targets != -100
        logits = logits_fn(tokens.to(device), mask.to(device)).float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.to(device).reshape(-1), reduction="sum")
        nll += float(loss)
        count += int(mask.sum())
    return nll, count


def perplexity(nll: float, count: int) -> float:
    """exp(mean NLL); inf when nothing was scored."""
    return math.exp(nll / count) if count else math.inf
