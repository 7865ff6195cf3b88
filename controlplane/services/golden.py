"""Golden sets: reading them (JSON Lines, uploaded or shipped beside an artifact as ``golden.jsonl``), and scoring a
worker on one: perplexity of the reference texts and agreement of greedy outputs with the references."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.db import transaction

from controlplane.models import GoldenSet, ModelVersion
from controlplane.services import audit
from controlplane.services.errors import InvalidInput

__all__ = ["create_golden_set", "golden_texts_for", "import_from_artifact", "parse_items"]

MAX_ITEMS = 1000
MAX_TEXT = 4000


ITEM_KEYS = {"prompt", "reference", "output", "max_tokens", "temperature", "id"}


def parse_items(raw) -> list[dict]:
    """Items from a list of objects or from JSON Lines text; errors name the item and the problem.

    An item has a ``prompt`` and a ``reference`` (real text that should follow it: scored by perplexity) and/or an
    ``output`` (what the model answered at temperature 0 when the set was made: compared with what it answers now);
    ``max_tokens`` optionally sets how long the answer is."""
    if isinstance(raw, str):
        rows = []
        for number, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise InvalidInput.field("items", f"line {number} is not valid JSON: {exc}") from None
        raw = rows
    if not isinstance(raw, list) or not raw:
        raise InvalidInput.field("items", "must be a non-empty list of {prompt, reference} objects (or JSON Lines)")
    if len(raw) > MAX_ITEMS:
        raise InvalidInput.field("items", f"at most {MAX_ITEMS} items; got {len(raw)}")
    items = []
    for index, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            raise InvalidInput.field("items", f"item {index} must be an object")
        items.append(_parse_item(index, item))
    return items


def _parse_item(index: int, item: dict) -> dict:
    unknown = set(item) - ITEM_KEYS
    if unknown:
        raise InvalidInput.field("items", f"item {index} has unknown keys: {', '.join(sorted(unknown))}")
    if not item.get("reference") and not item.get("output"):
        raise InvalidInput.field("items", f"item {index} needs a reference or an output")
    parsed: dict[str, Any] = {}
    for key in ("prompt", "reference", "output"):
        value = item.get(key)
        if value is None and key != "prompt":
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
            raise InvalidInput.field(
                "items", f"item {index}: {key} must be a non-empty string of at most {MAX_TEXT} characters"
            )
        parsed[key] = value
    max_tokens = item.get("max_tokens", 32)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 512:
        raise InvalidInput.field("items", f"item {index}: max_tokens must be a whole number from 1 to 512")
    parsed["max_tokens"] = max_tokens
    return parsed


def create_golden_set(actor: audit.Actor, model_version: ModelVersion, name: str, items) -> GoldenSet:
    parsed = parse_items(items)
    with transaction.atomic():
        golden = GoldenSet.objects.create(model_version=model_version, name=name, items=parsed, created_by=actor.user)
        audit.record(
            actor,
            "golden_set.create",
            golden,
            after={"name": name, "items": len(parsed), "model_version": str(model_version)},
        )
    return golden


def import_from_artifact(actor: audit.Actor, model_version: ModelVersion) -> GoldenSet | None:
    """Register the ``golden.jsonl`` shipped in a model version's artifact directory, if there is one."""
    path = Path(model_version.artifact_path) / "golden.jsonl"
    if not path.is_file() or model_version.golden_sets.exists():
        return None
    return create_golden_set(actor, model_version, "shipped with the artifact", path.read_text())


def golden_for(model_version: ModelVersion) -> GoldenSet | None:
    return model_version.golden_sets.first()


def golden_texts_for(model_version: ModelVersion) -> list[str]:
    golden = golden_for(model_version)
    return golden.texts() if golden else []
