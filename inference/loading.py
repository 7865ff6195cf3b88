"""Loading a model directory into a runner, with progress reporting (phase, percent, log lines)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inference import artifacts
from inference.checkpoint import load_checkpoint
from inference.errors import CheckpointError
from inference.models.hf import HFRunner, load_hf_model, load_tokenizer
from inference.models.runner import NativeRunner, Runner
from inference.precision import DTYPE, apply_precision, check_precision, resolve_device

log = logging.getLogger(__name__)


@dataclass
class LoadProgress:
    """What ``GET /control/status`` shows about the current or last load."""

    phase: str = "idle"
    percent: float = 0.0
    message: str = ""
    path: str | None = None
    model_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _logged: int = field(default=-1, repr=False)

    def begin(self, path: str, model_id: str) -> None:
        with self._lock:
            self.phase, self.percent, self.message, self.error = "loading", 0.0, "starting", None
            self.path, self.model_id, self.started_at, self.finished_at = path, model_id, time.time(), None
            self._logged = -1
        log.info("loading %s from %s", model_id, path)

    def update(self, fraction: float, message: str) -> None:
        with self._lock:
            self.percent, self.message = round(100 * min(max(fraction, 0.0), 1.0), 1), message
            decile = int(self.percent // 10)
            should_log, self._logged = decile > self._logged, max(decile, self._logged)
        if should_log:
            log.info("loading %s: %.0f%% %s", self.model_id, self.percent, message)

    def end(self, error: str | None = None) -> None:
        with self._lock:
            self.phase = "failed" if error else "ready"
            self.percent = self.percent if error else 100.0
            self.error, self.finished_at = error, time.time()
        if error:
            log.error("loading %s failed: %s", self.model_id, error)
        else:
            log.info("loaded %s in %.1fs", self.model_id, self.finished_at - (self.started_at or self.finished_at))

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def _model_format(root: Path) -> str:
    try:
        fmt: str = artifacts.read_model_config(root)["format"]
        return fmt
    except ValueError as exc:
        raise CheckpointError(str(root), str(exc)) from exc


def _load_native(
    root: Path, precision: str, device: torch.device, progress: LoadProgress
) -> tuple[Runner, dict[str, Any]]:
    model, raw, hashes = load_checkpoint(root, "cpu", lambda f, m: progress.update(0.85 * f, m))
    progress.update(0.85, f"moving to {device} as {precision}")
    model = apply_precision(model, precision, device)
    runner = NativeRunner(model, device, precision, DTYPE[precision])
    return runner, {"digest": artifacts.artifact_digest(root, known=hashes), "config": raw}


def _load_hf(root: Path, precision: str, device: torch.device, progress: LoadProgress) -> tuple[Runner, dict[str, Any]]:
    progress.update(0.1, "hashing files")
    digest = artifacts.artifact_digest(root)
    progress.update(0.4, "reading Hugging Face weights")
    model = load_hf_model(root, DTYPE[precision])
    progress.update(0.8, f"moving to {device} as {precision}")
    model = apply_precision(model, precision, device, skip=("gate", "router"))
    config: Any = model.config  # transformers' PretrainedConfig
    vocab = int(config.vocab_size)
    runner = HFRunner(model, load_tokenizer(root, vocab), device, precision)
    return runner, {"digest": digest, "config": config.to_dict()}


def load_runner(
    path: str, precision: str, device_spec: str, model_id: str | None, sha256: str | None, progress: LoadProgress
) -> Runner:
    """Verify and load ``path`` into a ready runner (warmed up with one forward pass)."""
    root = Path(path)
    device = resolve_device(device_spec)
    check_precision(precision, device)
    if not root.exists():
        raise CheckpointError(path, "no such file or directory")
    model_id = model_id or root.name
    progress.begin(path, model_id)
    fmt = _model_format(root)
    loader = _load_native if fmt == "moe" else _load_hf
    runner, extra = loader(root, precision, device, progress)
    if sha256 and sha256.lower() != extra["digest"]:
        raise CheckpointError(path, f"artifact sha256 is {extra['digest']}, expected {sha256}")
    progress.update(0.95, "warming up")
    runner.score([runner.tokenizer.encode("warm up")])
    normalised = artifacts.read_model_config(root)
    runner.info = {
        "id": model_id,
        "path": str(root.resolve()),
        "format": fmt,
        "precision": precision,
        "device": str(device),
        "sha256": extra["digest"],
        "parameters": artifacts.count_parameters(root),
        "weight_bytes": runner.weight_bytes(),
        "max_seq_len": runner.max_seq_len,
        "tokenizer": runner.tokenizer.name,
        "config": normalised,
        "quality": normalised["quality"],
        "loaded_at": time.time(),
    }
    return runner
