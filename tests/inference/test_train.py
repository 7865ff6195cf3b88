"""The demo-model training script and its corpus: deterministic, and it records what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference import corpus
from inference.artifacts import file_sha256
from inference.checkpoint import load_checkpoint
from inference.config import MoEConfig
from inference.train import TrainSettings, lr_at, train_demo

QUICK = TrainSettings(
    steps=3, batch_size=2, seq_len=32, log_every=1, max_files=80, heldout_chars=3000,
    model=MoEConfig(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32, n_experts=4, top_k=2, max_seq_len=64),
)  # fmt: skip


def test_the_corpus_split_is_deterministic_and_disjoint() -> None:
    train, heldout = corpus.gather(max_files=80)
    again = corpus.gather(max_files=80)
    assert (train, heldout) == again
    assert train and heldout
    assert not {d.source for d in train} & {d.source for d in heldout}
    assert all(len(d.text) >= corpus.MIN_CHARS for d in train + heldout)


def test_a_quick_training_run_saves_a_loadable_checkpoint_with_its_quality(tmp_path: Path) -> None:
    lines: list[str] = []
    summary = train_demo(tmp_path / "m", QUICK, report=lines.append)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["quality"] == summary["quality"]
    assert config["quality"]["heldout_tokens"] > 0 and config["quality"]["heldout_perplexity"] > 1
    assert config["training"]["steps"] == 3 and config["training"]["seed"] == 0
    assert any("step 3/3" in line for line in lines)
    load_checkpoint(tmp_path / "m")


def test_the_same_seed_trains_the_same_weights(tmp_path: Path) -> None:
    train_demo(tmp_path / "a", QUICK, report=lambda _line: None)
    train_demo(tmp_path / "b", QUICK, report=lambda _line: None)
    assert file_sha256(tmp_path / "a" / "model.safetensors") == file_sha256(tmp_path / "b" / "model.safetensors")


def test_the_learning_rate_warms_up_then_decays() -> None:
    s = TrainSettings(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, s) == pytest.approx(0.1) and lr_at(9, s) == pytest.approx(1.0)
    assert lr_at(10, s) == pytest.approx(1.0) and lr_at(100, s) == pytest.approx(0.1)
    assert lr_at(50, s) < lr_at(20, s)
