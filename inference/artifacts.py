"""Reading model artifacts without torch: checksum, normalised config, parameter count (stdlib only)."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

__all__ = ["artifact_digest", "count_parameters", "read_model_config"]

_CHUNK = 1 << 20


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(
        (
            p
            for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        ),
        key=lambda p: p.relative_to(root).as_posix(),
    )


def artifact_digest(path: str | Path) -> str:
    path = Path(path)
    if path.is_file():
        return _file_sha256(path)
    lines = "".join(f"{_file_sha256(f)}  {f.relative_to(path).as_posix()}\n" for f in _files(path))
    return hashlib.sha256(lines.encode()).hexdigest()


def read_model_config(path: str | Path) -> dict:
    path = Path(path)
    config_path = path / "config.json" if path.is_dir() else path.with_name("config.json")
    try:
        raw = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{config_path} is missing") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path} is not valid JSON: {exc}") from None
    if raw.get("model_type") == "lcp-moe":
        return {
            "format": "moe",
            "n_layers": raw["n_layers"],
            "d_model": raw["d_model"],
            "n_heads": raw["n_heads"],
            "n_kv_heads": raw.get("n_kv_heads", raw["n_heads"]),
            "head_dim": raw["d_model"] // raw["n_heads"],
            "n_experts": raw["n_experts"],
            "top_k": raw["top_k"],
            "vocab_size": raw["vocab_size"],
            "max_seq_len": raw["max_seq_len"],
            "quality": raw.get("quality", {}),
        }
    n_heads = raw.get("num_attention_heads")
    hidden = raw.get("hidden_size")
    if not (n_heads and hidden and raw.get("num_hidden_layers")):
        raise ValueError(f"{config_path} is neither a native nor a Hugging Face causal-LM config")
    n_experts = raw.get("num_local_experts") or raw.get("n_routed_experts") or raw.get("num_experts")
    return {
        "format": "hf",
        "n_layers": raw["num_hidden_layers"],
        "d_model": hidden,
        "n_heads": n_heads,
        "n_kv_heads": raw.get("num_key_value_heads", n_heads),
        "head_dim": raw.get("head_dim") or hidden // n_heads,
        "n_experts": n_experts,
        "top_k": raw.get("num_experts_per_tok") if n_experts else None,
        "vocab_size": raw.get("vocab_size"),
        "max_seq_len": raw.get("max_position_embeddings"),
        "quality": {},
    }


def count_parameters(path: str | Path) -> int:
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("*.safetensors"))
    total = 0
    for file in files:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for dim in info["shape"]:
                    count *= dim
                total += count
    return total
