"""The bundled demo model: small, verified, learned something, and reproducible (golden set, held-out score)."""

from __future__ import annotations

import json
import re

from inference.bridge import generate
from inference.checkpoint import load_checkpoint
from inference.corpus import corpus_fingerprint, heldout_texts
from inference.engine import Engine
from inference.golden import check_golden, read_golden
from tests.inference.helpers import DEMO


def test_the_demo_artifact_is_small_and_verifies() -> None:
    size = sum(p.stat().st_size for p in DEMO.iterdir())
    assert size <= 10 * 1024 * 1024
    load_checkpoint(DEMO)
    config = json.loads((DEMO / "config.json").read_text())
    assert (config["n_experts"], config["top_k"], config["n_layers"]) == (8, 2, 4)
    assert 1.0 < config["quality"]["heldout_perplexity"] < 8.0


def test_the_golden_set_reproduces_at_temperature_zero(make_engine) -> None:
    engine: Engine = make_engine(DEMO)
    records = read_golden(DEMO)
    assert len(records) >= 8
    assert check_golden(engine, records)["mismatches"] == []


def test_the_held_out_score_is_reproducible_through_the_engine(make_engine) -> None:
    engine: Engine = make_engine(DEMO)
    quality = json.loads((DEMO / "config.json").read_text())["quality"]
    texts = heldout_texts()
    assert corpus_fingerprint(texts) == quality["heldout_sha256"]
    out = engine.perplexity(texts)
    assert out["tokens"] == quality["heldout_tokens"]
    assert abs(out["perplexity"] - quality["heldout_perplexity"]) < 1e-3


def test_the_demo_model_writes_english_like_words(make_engine) -> None:
    engine: Engine = make_engine(DEMO)
    text = " ".join(
        generate(engine, prompt, max_tokens=120, temperature=0.7, seed=seed).text
        for seed, prompt in enumerate(["Return the ", "This function ", "The file "])
    )
    words = text.split()
    wordlike = [w for w in words if re.fullmatch(r"[A-Za-z]+[.,:;]?", w)]
    assert len(words) > 30 and len(wordlike) / len(words) > 0.6, text
    assert {"the", "a", "to", "of", "is", "in"} & {w.lower().strip(".,:;") for w in words}


def test_int8_and_bf16_stay_within_five_percent_of_fp32_on_held_out_text(make_engine) -> None:
    texts = heldout_texts(max_chars=8000)
    ppl = {p: make_engine(DEMO, precision=p).perplexity(texts)["perplexity"] for p in ("fp32", "bf16", "int8")}
    assert abs(ppl["bf16"] - ppl["fp32"]) / ppl["fp32"] < 0.05, ppl
    assert abs(ppl["int8"] - ppl["fp32"]) / ppl["fp32"] < 0.05, ppl
