"""How a deployment's worker is started: its command line (derived from the worker contract), its environment (an
allow-list: no secret of the control plane reaches a worker), and its control API as the pool uses it.

The supervisor and the canaries both build their workers here, and both run them in one ``WorkerPool`` per node.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from django.conf import settings

from controlplane.choices import NodeRole
from controlplane.models import Deployment, ModelVersion
from controlplane.workers.client import WorkerClient, WorkerError, worker_secret
from controlplane.workers.pool import ControlError, PoolSettings, SubprocessLauncher, WorkerPool, WorkerSpec
from inference import protocol

__all__ = [
    "ClientControl",
    "canary_key",
    "live_config",
    "make_pool",
    "next_key",
    "stable_key",
    "worker_environment",
    "worker_spec",
]

# Variables a worker may inherit: what Python, torch and the GPU libraries need, never the control plane's secrets.
ENV_ALLOW = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "VIRTUAL_ENV", "LD_LIBRARY_PATH")
ENV_ALLOW_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "NCCL_", "OMP_", "MKL_", "OPENBLAS_", "TORCH_", "PYTORCH_")


def stable_key(deployment_id: int) -> str:
    return f"deployment:{deployment_id}"


def next_key(deployment_id: int) -> str:
    """The key of a deployment's replacement worker while it starts beside the serving one."""
    return f"deployment:{deployment_id}:next"


def canary_key(rollout_id: int) -> str:
    return f"canary:{rollout_id}"


def live_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a deployment's config the worker applies live (``PATCH /control/config``)."""
    return {key: config[key] for key in protocol.LIVE_KEYS if key in config}


class ClientControl:
    """The pool's view of a worker's HTTP control API."""

    def __init__(self, client: WorkerClient) -> None:
        self.client = client

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except WorkerError as exc:
            raise ControlError(exc.message, exc.status, exc.body) from exc

    def ready(self) -> None:
        self._call("ready")

    def health(self) -> None:
        self._call("health")

    def progress(self) -> dict[str, Any] | None:
        status = self._call("status")
        loading = status.get("loading") or {}
        if status.get("phase") == protocol.Phase.FAILED:
            return {**loading, "phase": protocol.Phase.FAILED, "error": loading.get("error") or "unknown error"}
        return loading if loading.get("phase") == protocol.Phase.LOADING else None

    def inflight(self) -> int:
        stats = self._call("stats", timeout=5.0)
        return int(stats.get("running", 0)) + int(stats.get("queue_depth", 0))

    def patch_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("patch_config", changes))

    def swap(self, path: str, precision: str, *, sha256: str | None, model_id: str) -> dict[str, Any]:
        return dict(self._call("swap", path, precision, sha256=sha256, model_id=model_id))

    def close(self) -> None:
        self.client.close()


def cpu_threads(deployment: Deployment) -> int:
    """Compute threads for a CPU worker: ``WORKER_CPU_THREADS``, or every core but one where the control plane runs
    on the same node (it needs a core to stay responsive), or all of them."""
    if settings.WORKER_CPU_THREADS:
        return int(settings.WORKER_CPU_THREADS)
    cores = os.cpu_count() or 1
    shared = deployment.node.is_local and deployment.node.role != NodeRole.WORKER
    return max(1, cores - 1) if shared else cores


def worker_environment(deployment: Deployment, gpus: list[int]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key in ENV_ALLOW or key.startswith(ENV_ALLOW_PREFIXES)}
    env["WORKER_CONTROL_TOKEN"] = worker_secret(deployment.pk, "control")
    env["WORKER_API_KEY"] = worker_secret(deployment.pk, "api")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(settings.BASE_DIR)
    # OpenMP threads that spin after each step take the CPU the control plane (gateway, dashboard) needs.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
    return env


def worker_spec(
    deployment: Deployment, name: str, model_version: ModelVersion, config: dict[str, Any], revision: int
) -> WorkerSpec:
    """A worker of ``deployment`` serving ``model_version`` with ``config``: every worker setting of the config is
    passed as its flag (``inference.protocol.to_argv``)."""
    gpus = list(deployment.gpus.order_by("index").values_list("index", flat=True))
    worker_config = {key: value for key, value in config.items() if key in protocol.SETTINGS}
    if not gpus and worker_config.get("torch_threads") is None and "OMP_NUM_THREADS" not in os.environ:
        worker_config["torch_threads"] = cpu_threads(deployment)
    host = "127.0.0.1"

    def command(port: int) -> list[str]:
        argv = [sys.executable, "-m", "inference", "serve", "--host", host, "--port", str(port)]
        argv += ["--model", model_version.artifact_path, "--model-id", deployment.name]
        argv += protocol.to_argv(worker_config)
        if settings.WORKER_FAULT_INJECTION:
            argv.append(protocol.FAULT_INJECTION_FLAG)
        return argv + (["--device", "cpu"] if not gpus else [])

    deployment_id = deployment.pk
    return WorkerSpec(
        name=name,
        command=command,
        env=worker_environment(deployment, gpus),
        control=lambda url: ClientControl(WorkerClient.for_deployment(deployment_id, url)),
        revision=revision,
        config=dict(config),
        model_key=(model_version.pk, config.get("precision")),
        host=host,
    )


def make_pool(clock: Any = None) -> WorkerPool:
    """This node's pool, with the settings' timeouts and backoff."""
    pool_settings = PoolSettings(
        start_timeout_s=settings.WORKER_START_TIMEOUT_S,
        health_interval_s=settings.WORKER_HEALTH_INTERVAL_S,
        health_failures=settings.WORKER_HEALTH_FAILURES,
        backoff_base_s=settings.WORKER_BACKOFF_BASE_S,
        backoff_max_s=settings.WORKER_BACKOFF_MAX_S,
        backoff_reset_s=settings.WORKER_BACKOFF_RESET_S,
        retire_grace_s=settings.GATEWAY_ROUTE_CACHE_S + settings.WORKER_RETIRE_GRACE_S,
    )
    log_dir = Path(settings.VAR_DIR) / "log" / "workers"
    kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return WorkerPool(SubprocessLauncher(Path(settings.BASE_DIR)), settings=pool_settings, log_dir=log_dir, **kwargs)
