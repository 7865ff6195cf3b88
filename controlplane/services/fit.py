"""The fit check: will a model version with a config fit its GPUs (or its host's memory), headroom kept free?

Estimate = weights at the chosen precision + KV cache for a full batch at the longest sequence + overhead
(a fixed runtime reserve and 10% of the weights for activations and workspace). Deployments already running on the
same GPUs (or, without GPUs, on the same host) count against what is available.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from django.conf import settings

from controlplane.choices import DesiredState, Precision
from controlplane.models import GPU, Deployment, ModelVersion, Node

from .errors import InvalidInput

__all__ = ["MemoryEstimate", "check_fit", "estimate_memory", "format_bytes"]

WORKSPACE_SHARE = 0.10


def format_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    precision: str
    batch_size: int
    seq_len: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.overhead_bytes

    def as_dict(self) -> dict:
        return {**asdict(self), "total_bytes": self.total_bytes}

    def describe(self) -> str:
        return (
            f"{format_bytes(self.total_bytes)} (weights {format_bytes(self.weights_bytes)} at {self.precision} + "
            f"KV cache {format_bytes(self.kv_cache_bytes)} for batch {self.batch_size} × {self.seq_len} tokens + "
            f"overhead {format_bytes(self.overhead_bytes)})"
        )


def kv_bytes_per_token(model_version: ModelVersion, precision: str) -> int:
    arch = model_version.architecture or {}
    n_layers = int(arch.get("n_layers") or 0)
    n_kv_heads = int(arch.get("n_kv_heads") or arch.get("n_heads") or 0)
    head_dim = int(arch.get("head_dim") or 0)
    if not head_dim and arch.get("d_model") and arch.get("n_heads"):
        head_dim = int(arch["d_model"]) // int(arch["n_heads"])
    return 2 * n_layers * n_kv_heads * head_dim * Precision.kv_bytes_per_value(precision)


def estimate_memory(model_version: ModelVersion, config: dict, *, on_gpu: bool) -> MemoryEstimate:
    precision = config["precision"]
    seq_len = int(config.get("max_seq_len") or (model_version.architecture or {}).get("max_seq_len") or 2048)
    weights = int(model_version.parameter_count * Precision.bytes_per_param(precision))
    kv = config["max_batch_size"] * seq_len * kv_bytes_per_token(model_version, precision)
    runtime = settings.FIT_GPU_RUNTIME_BYTES if on_gpu else settings.FIT_CPU_RUNTIME_BYTES
    return MemoryEstimate(
        weights_bytes=weights,
        kv_cache_bytes=kv,
        overhead_bytes=int(runtime + WORKSPACE_SHARE * weights),
        precision=precision,
        batch_size=config["max_batch_size"],
        seq_len=seq_len,
    )


def _running_elsewhere(exclude: Deployment | None) -> Iterable[Deployment]:
    queryset = Deployment.objects.filter(desired_state=DesiredState.RUNNING, current_revision__isnull=False)
    if exclude is not None and exclude.pk is not None:
        queryset = queryset.exclude(pk=exclude.pk)
    return queryset.select_related("current_revision__model_version").prefetch_related("gpus")


def check_precision_on_device(config: dict, gpus: list[GPU]) -> None:
    """Refuse a precision the worker's device cannot run, as the worker would (``inference.precision``): a
    deployment without GPUs runs on the CPU, where fp16 is not supported."""
    if config.get("precision") == Precision.FP16 and not gpus:
        message = "fp16 is not supported on cpu (a deployment without GPUs runs on the CPU): use bf16 or fp32"
        raise InvalidInput({"config": {"precision": [message]}})


def check_fit(
    model_version: ModelVersion,
    config: dict,
    node: Node,
    gpus: list[GPU],
    *,
    exclude: Deployment | None = None,
    extra_claims: int = 0,
) -> MemoryEstimate:
    """Raise ``InvalidInput({"fit": [...]})`` quoting the numbers when the deployment does not fit.

    ``exclude`` is the deployment being changed (its current claim is replaced, not added); ``extra_claims`` is
    memory claimed beside it (a canary next to its stable version).
    """
    estimate = estimate_memory(model_version, config, on_gpu=bool(gpus))
    headroom = config.get("memory_headroom", 0.2)
    others = list(_running_elsewhere(exclude))
    if gpus:
        per_gpu = (estimate.total_bytes + extra_claims) / len(gpus)
        for gpu in gpus:
            taken = sum(_claim(d, on_gpu=True) / max(1, len(d.gpus.all())) for d in others if gpu in d.gpus.all())
            usable = gpu.memory_total_bytes * (1 - headroom) - taken
            if per_gpu > usable:
                raise InvalidInput(
                    {
                        "fit": [
                            _message(
                                estimate,
                                per_gpu,
                                f"GPU {gpu.index} ({gpu.name})",
                                gpu.memory_total_bytes,
                                headroom,
                                taken,
                                usable,
                            )
                        ]
                    }
                )
    else:
        taken = sum(_claim(d, on_gpu=False) for d in others if d.node_id == node.pk and not d.gpus.all())
        usable = node.memory_bytes * (1 - headroom) - taken
        needed = estimate.total_bytes + extra_claims
        if needed > usable:
            raise InvalidInput(
                {
                    "fit": [
                        _message(
                            estimate,
                            needed,
                            f"host memory of {node.hostname}",
                            node.memory_bytes,
                            headroom,
                            taken,
                            usable,
                        )
                    ]
                }
            )
    return estimate


def _claim(deployment: Deployment, *, on_gpu: bool) -> int:
    revision = deployment.current_revision
    assert revision is not None  # deployments are created with their first revision
    return estimate_memory(revision.model_version, revision.config, on_gpu=on_gpu).total_bytes


def _message(estimate, needed, where, total, headroom, taken, usable) -> str:
    if needed != estimate.total_bytes:
        text = f"Does not fit: needs {format_bytes(needed)} (this deployment: {estimate.describe()})"
    else:
        text = f"Does not fit: needs {estimate.describe()}"
    text += (
        f", but {where} has {format_bytes(max(usable, 0))} usable: {format_bytes(total)} total, "
        f"{headroom:.0%} headroom kept free"
    )
    if taken:
        text += f", {format_bytes(taken)} used by other running deployments"
    return text + "."
