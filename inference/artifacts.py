"""Read model artifacts without torch (pure standard library; the control plane imports this module).

- ``artifact_digest(path)``: sha256 of a file, or of a directory's listing of ``"{sha256}  {relpath}\\n"`` lines.
- ``read_model_config(path)``: a normalised view of a native (``lcp-moe``) or Hugging Face ``config.json``.
- ``count_parameters(path)``: parameters summed from the headers of every ``*.safetensors`` file.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
NATIVE_MODEL_TYPE = "lcp-moe"
MAX_HEADER_BYTES = 100 << 20


def file_sha256(path: str | Path, progress: Callable[[int], None] | None = None) -> str:
    """sha256 hex of a file's bytes; ``progress(n)`` is called with each chunk's size."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def _listed_files(root: Path) -> list[tuple[str, Path]]:
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file() or p.is_symlink():
            continue
        out.append((rel.as_posix(), p))
    return sorted(out)


def artifact_digest(path: str | Path, known: dict[str, str] | None = None) -> str:
    """sha256 of a file, or for a directory sha256 of the sorted ``"{sha256}  {relpath}\\n"`` lines of its files.

    Files and directories whose name starts with "." are skipped; paths are POSIX and relative to ``path``.
    ``known`` maps relative paths to sha256 values already computed (and verified) by the caller.
    """
    root = Path(path)
    if root.is_file():
        return file_sha256(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    known = known or {}
    lines = "".join(f"{known.get(rel) or file_sha256(p)}  {rel}\n" for rel, p in _listed_files(root))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _load_config(path: str | Path) -> dict[str, Any]:
    root = Path(path)
    cfg = root / "config.json" if root.is_dir() else root
    if not cfg.is_file():
        raise ValueError(f"{path}: no config.json found")
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{cfg}: config.json is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{cfg}: config.json must hold a JSON object")
    return data


def _int(data: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        value = data.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"config.json: {key}={value!r} is not an integer")
            return value
    return default


def _native(data: dict[str, Any]) -> dict[str, Any]:
    d_model, n_heads = _int(data, "d_model"), _int(data, "n_heads")
    if d_model is None or not n_heads:
        raise ValueError("config.json: native model config lacks d_model or n_heads")
    return {
        "format": "moe",
        "n_layers": _int(data, "n_layers"),
        "d_model": d_model,
        "n_heads": n_heads,
        "n_kv_heads": _int(data, "n_kv_heads", default=n_heads),
        "head_dim": d_model // n_heads,
        "n_experts": _int(data, "n_experts"),
        "top_k": _int(data, "top_k"),
        "vocab_size": _int(data, "vocab_size"),
        "max_seq_len": _int(data, "max_seq_len"),
    }


def _hf(data: dict[str, Any]) -> dict[str, Any]:
    text = data.get("text_config")
    if isinstance(text, dict) and "hidden_size" not in data:
        data = {**data, **text}
    d_model, n_heads = _int(data, "hidden_size", "n_embd", "d_model"), _int(data, "num_attention_heads", "n_head")
    if d_model is None or not n_heads:
        raise ValueError("config.json: Hugging Face config lacks hidden_size or num_attention_heads")
    n_experts = _int(data, "num_local_experts", "n_routed_experts", "num_experts")
    return {
        "format": "hf",
        "n_layers": _int(data, "num_hidden_layers", "n_layer", "num_layers"),
        "d_model": d_model,
        "n_heads": n_heads,
        "n_kv_heads": _int(data, "num_key_value_heads", default=n_heads),
        "head_dim": _int(data, "head_dim", default=d_model // n_heads),
        "n_experts": n_experts,
        "top_k": _int(data, "num_experts_per_tok", "moe_topk") if n_experts else None,
        "vocab_size": _int(data, "vocab_size"),
        "max_seq_len": _int(data, "max_position_embeddings", "n_positions", "max_seq_len"),
    }


def read_model_config(path: str | Path) -> dict[str, Any]:
    """Normalised config of a checkpoint directory (native ``lcp-moe`` or Hugging Face).

    Keys: format ("moe"|"hf"), n_layers, d_model, n_heads, n_kv_heads, head_dim, n_experts and top_k (None for a
    dense model), vocab_size, max_seq_len, quality (dict; empty when the checkpoint records none). Raises ValueError
    for a missing, corrupt or unrecognised config.
    """
    data = _load_config(path)
    model_type = data.get("model_type")
    if model_type == NATIVE_MODEL_TYPE:
        out = _native(data)
    elif isinstance(model_type, str) and model_type:
        out = _hf(data)
    else:
        raise ValueError(f"{path}: config.json has no recognised model_type ({model_type!r})")
    quality = data.get("quality")
    out["quality"] = dict(quality) if isinstance(quality, dict) else {}
    return out


def read_safetensors_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: too short to be a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"{path}: safetensors header length {length} is implausible")
        raw = fh.read(length)
    if len(raw) != length:
        raise ValueError(f"{path}: safetensors header is truncated")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{path}: safetensors header must be a JSON object")
    return header


def count_parameters(path: str | Path) -> int:
    """Number of parameters (tensor elements) over all ``*.safetensors`` files of a file or directory."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(root.rglob("*.safetensors"))
    if not files:
        raise ValueError(f"{path}: no .safetensors files")
    total = 0
    for f in files:
        for name, entry in read_safetensors_header(f).items():
            if name == "__metadata__":
                continue
            n = 1
            for dim in entry.get("shape", []):
                n *= int(dim)
            total += n
    return total
