"""Train the bundled demo model: ``python -m inference train-demo --seed 0 --out inference/demo/moe-demo-v1``.

Byte-level next-token prediction on the docstrings of Python's standard library (gathered at run time, see
``inference.corpus``), fixed seed, AdamW with warm-up and cosine decay, a small load-balancing loss for the router.
The held-out perplexity is recorded in ``config.json`` (``quality``), then a golden set of temperature-0 outputs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from inference import corpus
from inference.checkpoint import save_checkpoint
from inference.config import MoEConfig
from inference.models.moe import MoEModel
from inference.perplexity import perplexity, score_windows, windows
from inference.tokenizer import ByteTokenizer

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Hyper-parameters of the demo run (defaults train in a few minutes on 2 CPU cores)."""

    seed: int = 0
    steps: int = 600
    batch_size: int = 16
    seq_len: int = 256
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    aux_loss_coef: float = 0.01
    grad_clip: float = 1.0
    log_every: int = 50
    heldout_chars: int = 60_000
    max_files: int | None = None
    model: MoEConfig = field(default_factory=MoEConfig)


def token_stream(docs: list[corpus.Doc], tok: ByteTokenizer) -> torch.Tensor:
    """All documents as one ``<bos> text <eos>`` stream of token ids."""
    ids: list[int] = []
    for doc in docs:
        ids.extend(tok.encode(doc.text))
        ids.append(tok.EOS)
    return torch.tensor(ids, dtype=torch.long)


def lr_at(step: int, s: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr``."""
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    progress = (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps)
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def heldout_perplexity(model: MoEModel, texts: list[str], tok: ByteTokenizer) -> tuple[float, int]:
    """(perplexity, tokens scored) of ``texts`` through the model's uncached forward."""
    wins = windows([[*tok.encode(t), tok.EOS] for t in texts], model.cfg.max_seq_len)
    with torch.inference_mode():
        nll, n = score_windows(lambda t, _m: model(t), wins, tok.PAD, torch.device("cpu"))
    return perplexity(nll, n), n


def _train_loop(model: MoEModel, data: torch.Tensor, s: TrainSettings, report: Callable[[str], None]) -> list[float]:
    gen = torch.Generator().manual_seed(s.seed + 1)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s.lr,
        betas=(0.9, 0.95),
    )
    model.train()
    losses, started = [], time.perf_counter()
    for step in range(s.steps):
        starts = torch.randint(0, len(data) - s.seq_len - 1, (s.batch_size,), generator=gen)
        batch = torch.stack([data[i : i + s.seq_len + 1] for i in starts.tolist()])
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s)
        opt.zero_grad(set_to_none=True)
        (loss + s.aux_loss_coef * model.aux_loss()).backward()  # type: ignore[no-untyped-call]  # unannotated in torch
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % s.log_every == 0 or step == 0:
            recent = sum(losses[-s.log_every :]) / len(losses[-s.log_every :])
            report(f"step {step + 1}/{s.steps} loss {recent:.3f} ({time.perf_counter() - started:.0f}s)")
    model.eval()
    return losses


def train_demo(
    out_dir: str | Path, s: TrainSettings | None = None, report: Callable[[str], None] = log.info
) -> dict[str, Any]:
    """Train, score the held-out text, save the checkpoint; returns a summary (also stored in config.json)."""
    s = s or TrainSettings()
    torch.manual_seed(s.seed)
    tok = ByteTokenizer()
    started = time.perf_counter()
    train_docs, heldout_docs = corpus.gather(s.max_files)
    data = token_stream(train_docs, tok)
    texts = corpus.heldout_texts(s.heldout_chars, s.max_files)
    report(f"corpus: {len(train_docs)} train docs ({len(data)} tokens), {len(heldout_docs)} held-out docs")
    model = MoEModel(s.model)
    model.init_weights(torch.Generator().manual_seed(s.seed))
    losses = _train_loop(model, data, s, report)
    train_s = time.perf_counter() - started
    ppl, n_tokens = heldout_perplexity(model, texts, tok)
    tail = losses[-min(50, len(losses)) :]
    quality = {
        "heldout_perplexity": round(ppl, 4),
        "heldout_tokens": n_tokens,
        "heldout_docs": len(texts),
        "heldout_sha256": corpus.corpus_fingerprint(texts),
        "corpus": f"python {corpus.python_version()} stdlib docstrings",
    }
    training = {
        **{k: v for k, v in asdict(s).items() if k != "model"},
        "final_train_loss": round(sum(tail) / len(tail), 4),
        "train_tokens": s.steps * s.batch_size * s.seq_len,
        "train_seconds": round(train_s, 1),
        "torch": torch.__version__,
    }
    save_checkpoint(model, out_dir, extra={"quality": quality, "training": training})
    report(f"held-out perplexity {ppl:.3f} over {n_tokens} tokens; trained in {train_s:.0f}s; saved {out_dir}")
    return {"quality": quality, "training": training}
