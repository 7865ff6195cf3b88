"""Devices and precisions: fp32, fp16 and bf16 on CUDA; fp32, bf16 and int8 on the CPU.

int8 is weight-only: each ``nn.Linear`` (except the MoE routers, which stay in full precision so routing does not
shift) becomes an ``Int8Linear`` holding int8 weights with one fp32 scale per output row (symmetric, per-channel).
Activations stay in floating point. ``torch.ao.quantization.quantize_dynamic`` is deprecated in torch 2.13 (it warns
that it will be removed), so this is a small implementation of our own; on the CPU it uses torch's int8 weight
matmul kernel (``torch._weight_int8pack_mm``) when present and falls back to dequantize-then-matmul otherwise.
"""

from __future__ import annotations

from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from inference.errors import InvalidRequest

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DTYPE = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (cuda when available), ``cpu``, ``cuda`` or ``cuda:N``; an unavailable device is a 400."""
    if not isinstance(spec, str) or not spec:
        raise InvalidRequest(f"device must be auto, cpu, cuda or cuda:N, got {spec!r}", param="device")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise InvalidRequest(f"device {spec!r} is not a valid device ({exc})", param="device") from exc
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise InvalidRequest(f"device {spec!r} is not supported; use auto, cpu, cuda or cuda:N", param="device")
    if not torch.cuda.is_available():
        raise InvalidRequest(f"device {spec!r} requested but CUDA is not available on this machine", param="device")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise InvalidRequest(f"device {spec!r} does not exist ({torch.cuda.device_count()} CUDA devices)", "device")
    return device


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse combinations that do not work (well) with a 400 naming ``precision``."""
    if precision not in PRECISIONS:
        raise InvalidRequest(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}", "precision")
    if precision == "fp16" and device.type == "cpu":
        raise InvalidRequest("precision fp16 is not supported on cpu (use bf16 or fp32)", param="precision")
    if precision == "int8" and device.type != "cpu":
        raise InvalidRequest(f"precision int8 is supported on cpu only, not on {device}", param="precision")


class Int8Linear(nn.Module):
    """A Linear layer with int8 weights and per-output-channel fp32 scales (weight-only quantization)."""

    weight: torch.Tensor  # buffers (registered in __init__)
    scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("weight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().float())
        self.in_features, self.out_features = w.shape[1], w.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.device.type == "cpu" and flat.dtype == torch.float32 and hasattr(torch, "_weight_int8pack_mm"):
            out = torch._weight_int8pack_mm(flat.contiguous(), self.weight, self.scale)
        else:
            out = flat @ (self.weight.to(flat.dtype) * self.scale.to(flat.dtype)[:, None]).T
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.view(*x.shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        """The fp32 weight this layer computes with."""
        return self.weight.float() * self.scale[:, None]


def quantize_int8(model: nn.Module, skip: tuple[str, ...] = ("router",)) -> int:
    """Replace every nn.Linear (names ending in ``skip`` excepted) with Int8Linear in place; returns the count."""
    targets = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and not name.split(".")[-1].endswith(skip)
    ]
    for name, mod in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, Int8Linear(mod.weight, mod.bias))
    return len(targets)


M = TypeVar("M", bound=nn.Module)


def apply_precision(model: M, precision: str, device: torch.device, skip: tuple[str, ...] = ("router",)) -> M:
    """Move ``model`` to ``device`` in ``precision`` (call ``check_precision`` first)."""
    if precision == "int8":
        model = model.to(device=device, dtype=torch.float32)
        quantize_int8(model, skip)
        return model
    return model.to(device=device, dtype=DTYPE[precision])


def weight_bytes(model: nn.Module) -> int:
    """Bytes actually held by the model's parameters and persistent buffers (each storage counted once)."""
    seen, total = set(), 0
    for tensor in model.state_dict().values():
        if tensor.device.type == "meta":
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.device)
        if key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
    return total


def linear_fallback(x: torch.Tensor, layer: Int8Linear) -> torch.Tensor:
    """Reference result of an Int8Linear through a plain matmul (used by tests to check the fast kernel)."""
    return F.linear(x, layer.dequantized(), layer.bias)
