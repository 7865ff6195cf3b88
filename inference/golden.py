"""Golden set: fixed prompts with the model's temperature-0 outputs, stored beside the checkpoint for drift checks.

Two kinds of items: fixed prompts with the model's output (did the model change?), and held-out docstrings cut
into a prompt and the real text that follows (``reference``: how well does the model predict real text? Perplexity
on references compares different versions fairly, where agreement with one version's outputs would not)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inference.bridge import generate
from inference.checkpoint import write_manifest
from inference.engine import Engine

GOLDEN_FILE = "golden.jsonl"
PROMPTS = (
    "Return the ",
    "This module provides ",
    "The default value is ",
    "Raise ValueError if ",
    "Create a new ",
    "If the file does not exist, ",
    "The optional argument ",
    "This function is called when ",
)
MAX_TOKENS = 48
HELDOUT_ITEMS = 16
PROMPT_CHARS = 40
REFERENCE_CHARS = 160


def heldout_pairs(count: int = HELDOUT_ITEMS) -> list[tuple[str, str]]:
    """(prompt, reference) pairs cut from the held-out docstrings at a word boundary (deterministic)."""
    from inference.corpus import heldout_texts

    pairs = []
    for text in heldout_texts():
        text = " ".join(text.split())
        if len(text) < PROMPT_CHARS + REFERENCE_CHARS:
            continue
        cut = text.rfind(" ", 0, PROMPT_CHARS) + 1 or PROMPT_CHARS
        pairs.append((text[:cut], text[cut : cut + REFERENCE_CHARS]))
        if len(pairs) == count:
            break
    return pairs


def golden_records(
    engine: Engine, prompts: tuple[str, ...] = PROMPTS, max_tokens: int = MAX_TOKENS
) -> list[dict[str, Any]]:
    """Temperature-0 completions of ``prompts`` and of the held-out prompts through the engine's active model."""
    out = []
    for prompt in prompts:
        result = generate(engine, prompt, max_tokens=max_tokens, temperature=0.0)
        out.append({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "output": result.text})
    for prompt, reference in heldout_pairs():
        result = generate(engine, prompt, max_tokens=max_tokens, temperature=0.0)
        out.append(
            {
                "prompt": prompt,
                "reference": reference,
                "max_tokens": max_tokens,
                "temperature": 0.0,
                "output": result.text,
            }
        )
    return out


def write_golden(path: str | Path, precision: str = "fp32") -> list[dict[str, Any]]:
    """Load the checkpoint, write ``golden.jsonl`` beside it and refresh the manifest."""
    engine = Engine().start()
    try:
        engine.load(str(path), precision, "cpu")
        records = golden_records(engine)
    finally:
        engine.stop()
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    (Path(path) / GOLDEN_FILE).write_text(lines, encoding="utf-8")
    write_manifest(path)
    return records


def read_golden(path: str | Path) -> list[dict[str, Any]]:
    """The golden records of a checkpoint (empty when it has none)."""
    file = Path(path) / GOLDEN_FILE
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_golden(engine: Engine, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Regenerate each golden prompt at temperature 0; how many outputs still match exactly."""
    mismatches = []
    for rec in records:
        got = generate(engine, rec["prompt"], max_tokens=rec["max_tokens"], temperature=0.0).text
        if got != rec["output"]:
            mismatches.append({"prompt": rec["prompt"], "expected": rec["output"], "got": got})
    return {"total": len(records), "matches": len(records) - len(mismatches), "mismatches": mismatches}
