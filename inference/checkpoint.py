"""Native checkpoints: ``config.json`` + ``model.safetensors`` + ``manifest.json`` (sha256 of every other file).

Loading verifies every sha256 in the manifest and that tensor names and shapes match the config; anything wrong is
a ``CheckpointError`` naming the file and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file

from inference.artifacts import file_sha256, read_safetensors_header
from inference.config import MoEConfig
from inference.errors import CheckpointError
from inference.models.moe import MoEModel, state_shapes
from inference.protocol import ConfigError

CONFIG, WEIGHTS, MANIFEST = "config.json", "model.safetensors", "manifest.json"
Progress = Callable[[float, str], None]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def _noop(_fraction: float, _message: str) -> None:
    return None


def write_manifest(out_dir: str | Path) -> dict[str, str]:
    """(Re)write ``manifest.json`` with the sha256 of every regular, non-hidden file beside it."""
    root = Path(out_dir)
    names = sorted(p.name for p in root.iterdir() if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))
    files = {name: file_sha256(root / name) for name in names}
    (root / MANIFEST).write_text(json.dumps({"files": files}, indent=2) + "\n", encoding="utf-8")
    return files


def save_checkpoint(
    model: MoEModel, out_dir: str | Path, extra: dict[str, Any] | None = None, dtype: str = "float32"
) -> Path:
    """Write a checkpoint directory; ``extra`` keys (quality, training, ...) are stored in ``config.json``."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    cfg = MoEConfig.from_json({**model.cfg.to_json(), "torch_dtype": dtype})
    tensors = {k: v.detach().to("cpu", DTYPES[dtype]).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(root / WEIGHTS), metadata={"format": "pt"})
    config = {**cfg.to_json(), **(extra or {})}
    (root / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    write_manifest(root)
    return root


def _read_manifest(root: Path) -> dict[str, str]:
    path = root / MANIFEST
    if not path.is_file():
        raise CheckpointError(str(root), f"{MANIFEST} is missing")
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(str(path), f"not a valid manifest ({exc})") from exc
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise CheckpointError(str(path), '"files" must map file names to sha256 strings')
    for required in (CONFIG, WEIGHTS):
        if required not in files:
            raise CheckpointError(str(path), f"{required} is not listed")
    return files


def verify_files(path: str | Path, progress: Progress = _noop) -> dict[str, str]:
    """Check that every file of the manifest exists and has the listed sha256; returns the manifest."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(str(path), "no such checkpoint directory")
    files = _read_manifest(root)
    total = sum((root / n).stat().st_size for n in files if (root / n).is_file()) or 1
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(done / total, "verifying sha256")

    for name, expected in sorted(files.items()):
        if not (root / name).is_file():
            raise CheckpointError(str(root / name), "listed in manifest.json but missing")
        actual = file_sha256(root / name, advance)
        if actual != expected:
            raise CheckpointError(str(root / name), f"sha256 is {actual} but manifest.json says {expected}")
    return files


def read_config(path: str | Path) -> tuple[MoEConfig, dict[str, Any]]:
    """The model config and the raw ``config.json`` of a native checkpoint."""
    cfg_path = Path(path) / CONFIG
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
        return MoEConfig.from_json(raw), raw
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(str(cfg_path), f"cannot read config ({exc})") from exc
    except (ConfigError, AttributeError) as exc:
        raise CheckpointError(str(cfg_path), f"invalid config ({exc})") from exc


def check_tensors(path: Path, cfg: MoEConfig) -> None:
    """Compare the safetensors header with the config: names, shapes and dtype."""
    try:
        header = read_safetensors_header(path)
    except (OSError, ValueError) as exc:
        raise CheckpointError(str(path), str(exc)) from exc
    header.pop("__metadata__", None)
    want = state_shapes(cfg)
    missing, unexpected = sorted(set(want) - set(header)), sorted(set(header) - set(want))
    if missing:
        raise CheckpointError(str(path), f"missing tensors: {', '.join(missing[:5])}")
    if unexpected:
        raise CheckpointError(str(path), f"unexpected tensors: {', '.join(unexpected[:5])}")
    for name, shape in want.items():
        entry = header[name]
        if list(entry.get("shape", [])) != shape:
            raise CheckpointError(str(path), f"tensor {name} has shape {entry.get('shape')}, config expects {shape}")
        if SAFETENSORS_DTYPES.get(entry.get("dtype")) is None:
            raise CheckpointError(str(path), f"tensor {name} has unsupported dtype {entry.get('dtype')}")


class Loaded(NamedTuple):
    """A loaded checkpoint: the model (eval mode, fp32), its raw config.json and the verified sha256 of each file."""

    model: MoEModel
    config: dict[str, Any]
    hashes: dict[str, str]


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", progress: Progress = _noop) -> Loaded:
    """Verify every file against the manifest, check tensor names/shapes against the config, and load."""
    root = Path(path)
    hashes = verify_files(root, lambda f, m: progress(0.8 * f, m))
    cfg, raw = read_config(root)
    check_tensors(root / WEIGHTS, cfg)
    progress(0.85, "reading weights")
    try:
        tensors = load_file(str(root / WEIGHTS), device=str(device))
    except Exception as exc:  # safetensors raises its own error types for corrupt data
        raise CheckpointError(str(root / WEIGHTS), f"cannot read tensors ({exc})") from exc
    model = MoEModel(cfg).to(device)
    model.load_state_dict(tensors, strict=True)
    progress(0.95, "weights loaded")
    return Loaded(model.eval(), raw, hashes)
