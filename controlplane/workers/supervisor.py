"""The supervisor: starts, watches, restarts and configures the worker processes of this node's deployments.

One thread owns every worker process (so that ``PR_SET_PDEATHSIG`` ties them to a thread that lives as long as the
control plane: a killed control plane takes its workers with it). Each step reconciles what the database wants
with what runs: start what should run, stop what should not, restart what died or stopped answering (exponential
backoff, an event with the exit code and the last log lines each time), and apply new revisions — config changes
live through the worker's control API, a model or precision change by a swap that keeps requests in flight.
Changes made in any process reach it: it polls the database; the ``deployment_changed`` signal only wakes it early.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from controlplane import runtime
from controlplane.choices import DeploymentStatus, DesiredState, NodeRole, WorkerEventKind
from controlplane.models import Deployment, DeploymentRevision, Node, WorkerEvent
from controlplane.services.deployments import deployment_changed
from controlplane.services.serving import publish_served_revision
from controlplane.workers.client import WorkerClient, WorkerError, worker_secret

logger = logging.getLogger(__name__)

__all__ = ["LIVE_CONFIG_KEYS", "Supervisor", "WorkerProcess"]

# Config keys the worker takes live; the rest are the control plane's own (cache, fit check, leak policy).
LIVE_CONFIG_KEYS = ("max_batch_size", "max_wait_ms", "max_queue", "session_timeout_s", "router_weights")
LOG_TAIL_LINES = 40


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the supervising thread dies (Linux only)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def live_config(config: dict) -> dict:
    return {key: config.get(key) for key in LIVE_CONFIG_KEYS if key in config}


@dataclass
class WorkerProcess:
    """One worker process and what the supervisor knows about it."""

    deployment_id: int
    revision: int
    port: int
    popen: subprocess.Popen
    log_path: Path
    started: float
    started_wall: float = field(default_factory=time.time)
    healthy_since: float | None = None
    health_failures: int = 0
    last_health_check: float = 0.0
    model_key: tuple = field(default_factory=tuple)
    client: WorkerClient | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exit_code(self) -> int | None:
        return self.popen.poll()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 16_384))
                return b"\n".join(handle.read().splitlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    def terminate(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (the worker drains and exits), then SIGKILL if it has not exited within ``timeout``."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


@dataclass
class Backoff:
    """Exponential restart delay per deployment; reset once a worker has stayed healthy for a while."""

    base_s: float
    max_s: float
    attempts: int = 0
    not_before: float = 0.0

    def next_delay(self) -> float:
        delay = min(self.max_s, self.base_s * (2**self.attempts))
        self.attempts += 1
        return delay


class Supervisor(runtime.ServiceThread):
    name = "supervisor"
    idle_s = 1.0

    def __init__(self, node: Node | None = None, *, clock=time.monotonic):
        super().__init__()
        self.node_id = node.pk if node else None
        self.clock = clock
        self.workers: dict[int, WorkerProcess] = {}
        self.backoff: dict[object, Backoff] = {}  # by deployment id, or "canary-<rollout id>"
        # Revisions a worker refused (bad config for this worker): not retried until the revision changes.
        self.refused: dict[int, int] = {}
        # Workers replaced by a promoted canary, terminated once the gateway no longer routes to them.
        self.retiring: list[tuple[WorkerProcess, float]] = []
        from controlplane.rollouts.canaries import Canaries

        self.canaries = Canaries(self)
        self.log_dir = Path(settings.VAR_DIR) / "log" / "workers"
        deployment_changed.connect(self._on_change, dispatch_uid="supervisor")

    def _on_change(self, sender, deployment, **kwargs) -> None:
        self.wake()

    # --- the loop ----------------------------------------------------------------------------------------------------
    def step(self) -> bool:
        deployments = list(self._local_deployments())
        did_work = self.canaries.step(deployments)
        for deployment in deployments:
            did_work |= self.reconcile(deployment)
        did_work |= self._retire_due()
        known = {d.pk for d in deployments}
        for deployment_id in [pk for pk in self.workers if pk not in known]:
            self._stop_worker(deployment_id, "the deployment is gone from this node")
            did_work = True
        return did_work

    def _local_deployments(self):
        queryset = Deployment.objects.select_related("current_revision__model_version", "node")
        if self.node_id is not None:
            queryset = queryset.filter(node_id=self.node_id)
        return queryset.filter(current_revision__isnull=False)

    def reconcile(self, deployment: Deployment) -> bool:
        worker = self.workers.get(deployment.pk)
        if deployment.desired_state == DesiredState.STOPPED:
            if worker is not None:
                self._stop_worker(deployment.pk, "stopped by request")
                return True
            return False
        if worker is None:
            return self._start_if_due(deployment)
        if worker.exit_code() is not None:
            self._on_exit(deployment, worker)
            return True
        requested = deployment.restart_requested_at
        if requested and requested.timestamp() > worker.started_wall:
            self._restart(deployment, worker, WorkerEventKind.RESTARTED, "restart requested by an operator")
            return True
        if worker.healthy_since is None:
            return self._check_starting(deployment, worker)
        self._check_health(deployment, worker)
        number = deployment.current_revision.number
        if number != deployment.applied_revision and self.refused.get(deployment.pk) != number:
            self.apply(deployment, worker)
            return True
        return False

    # --- starting and stopping ---------------------------------------------------------------------------------------
    @property
    def start_timeout(self) -> float:
        return settings.WORKER_START_TIMEOUT_S

    @property
    def health_failures(self) -> int:
        return settings.WORKER_HEALTH_FAILURES

    def restart_due(self, key) -> bool:
        backoff = self.backoff.get(key)
        return backoff is None or self.clock() >= backoff.not_before

    def health_due(self, worker: WorkerProcess) -> bool:
        if self.clock() - worker.last_health_check < settings.WORKER_HEALTH_INTERVAL_S:
            return False
        worker.last_health_check = self.clock()
        return True

    def _start_if_due(self, deployment: Deployment) -> bool:
        if not self.restart_due(deployment.pk):
            return False
        self.start_worker(deployment)
        return True

    def command(self, deployment: Deployment, port: int, model_version=None, config: dict | None = None) -> list[str]:
        revision = deployment.current_revision
        model_version = model_version or revision.model_version
        config = config or revision.config
        command = [
            sys.executable,
            "-m",
            "inference",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model",
            model_version.artifact_path,
            "--precision",
            config["precision"],
            "--model-id",
            deployment.name,
            "--max-batch-size",
            str(config["max_batch_size"]),
            "--max-wait-ms",
            str(config["max_wait_ms"]),
            "--session-timeout-s",
            str(config["session_timeout_s"]),
        ]
        if not deployment.gpus.exists():
            command += ["--device", "cpu"]
        return command

    def environment(self, deployment: Deployment) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("SECRET_KEY", "DATABASE_URL"))}
        env["WORKER_CONTROL_TOKEN"] = worker_secret(deployment.pk, "control")
        env["WORKER_API_KEY"] = worker_secret(deployment.pk, "api")
        env["PYTHONUNBUFFERED"] = "1"
        # OpenMP threads that spin after each step take the CPU the control plane (gateway, dashboard) needs.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        gpus = list(deployment.gpus.order_by("index").values_list("index", flat=True))
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
        elif "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = str(self.cpu_threads(deployment))
        env.setdefault("PYTHONPATH", str(settings.BASE_DIR))
        return env

    def spawn(self, deployment: Deployment, log_name: str, model_version, config: dict, revision: int) -> WorkerProcess:
        """Start a worker process for ``model_version`` with ``config``; its output goes to a log file."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        log_path = self.log_dir / f"{log_name}.log"
        with log_path.open("ab") as log:
            log.write(f"\n--- {timezone.now():%Y-%m-%d %H:%M:%S} starting on port {port}\n".encode())
            popen = subprocess.Popen(
                self.command(deployment, port, model_version, config),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(deployment),
                cwd=settings.BASE_DIR,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return WorkerProcess(
            deployment.pk,
            revision,
            port,
            popen,
            log_path,
            self.clock(),
            model_key=(model_version.pk, config["precision"]),
        )

    @staticmethod
    def cpu_threads(deployment: Deployment) -> int:
        """Compute threads for a CPU worker: ``WORKER_CPU_THREADS``, or every core but one where the control plane
        runs on the same node (it needs a core to stay responsive), or all of them."""
        if settings.WORKER_CPU_THREADS:
            return settings.WORKER_CPU_THREADS
        cores = os.cpu_count() or 1
        shared = deployment.node.is_local and deployment.node.role != NodeRole.WORKER
        return max(1, cores - 1) if shared else cores

    def start_worker(self, deployment: Deployment) -> WorkerProcess:
        revision = deployment.current_revision
        worker = self.spawn(deployment, deployment.name, revision.model_version, revision.config, revision.number)
        popen, port = worker.popen, worker.port
        self.workers[deployment.pk] = worker
        Deployment.objects.filter(pk=deployment.pk).update(
            status=DeploymentStatus.STARTING,
            status_detail=f"starting worker (pid {popen.pid}, port {port})",
            worker_pid=popen.pid,
            worker_url="",
            worker_started_at=timezone.now(),
        )
        self.event(
            deployment,
            WorkerEventKind.STARTED,
            f"worker started: pid {popen.pid}, port {port}, revision {revision.number}",
            details={"pid": popen.pid, "port": port},
        )
        return worker

    def _check_starting(self, deployment: Deployment, worker: WorkerProcess) -> bool:
        client = self.client(deployment, worker)
        try:
            client.ready()
        except WorkerError as exc:
            if self.clock() - worker.started > settings.WORKER_START_TIMEOUT_S:
                self._restart(
                    deployment,
                    worker,
                    WorkerEventKind.UNHEALTHY,
                    f"not healthy {settings.WORKER_START_TIMEOUT_S:.0f} s after start: {exc.message}",
                )
                return True
            self._show_progress(deployment, worker, client)
            return False
        worker.healthy_since = self.clock()
        worker.last_health_check = self.clock()
        self.apply(deployment, worker, initial=True)
        return True

    def _show_progress(self, deployment: Deployment, worker: WorkerProcess, client: WorkerClient) -> None:
        """While the worker loads its model, the deployment's status says how far it is (shown on its page)."""
        try:
            loading = client.status().get("loading") or {}
        except WorkerError:
            return  # not answering yet: still starting up
        if loading.get("phase") == "loading":
            detail = (
                f"loading the model: {loading.get('percent', 0):.0f}% ({loading.get('message', '')}), "
                f"pid {worker.popen.pid}"
            )
            Deployment.objects.filter(pk=deployment.pk).update(status_detail=detail[:500])

    def _check_health(self, deployment: Deployment, worker: WorkerProcess) -> None:
        now = self.clock()
        if not self.health_due(worker):
            return
        try:
            self.client(deployment, worker).health()
        except WorkerError as exc:
            worker.health_failures += 1
            logger.warning("%s: health check failed (%d): %s", deployment.name, worker.health_failures, exc.message)
            if worker.health_failures >= settings.WORKER_HEALTH_FAILURES:
                self._restart(
                    deployment,
                    worker,
                    WorkerEventKind.UNHEALTHY,
                    f"/health failed {worker.health_failures} times in a row: {exc.message}",
                )
            return
        worker.health_failures = 0
        if now - worker.healthy_since > settings.WORKER_BACKOFF_RESET_S:
            self.backoff.pop(deployment.pk, None)

    def _on_exit(self, deployment: Deployment, worker: WorkerProcess) -> None:
        code = worker.exit_code()
        tail = worker.log_tail()
        self.workers.pop(deployment.pk, None)
        delay = self.schedule_restart(deployment.pk)
        message = f"worker exited with code {code}; restarting in {delay:.0f} s"
        self.event(deployment, WorkerEventKind.EXITED, message, exit_code=code, log_tail=tail)
        self._mark(deployment, DeploymentStatus.DEGRADED, message)

    def _restart(self, deployment: Deployment, worker: WorkerProcess, kind: str, reason: str) -> None:
        tail = worker.log_tail()
        code = worker.terminate()
        self.workers.pop(deployment.pk, None)
        delay = 0.0 if kind == WorkerEventKind.RESTARTED else self.schedule_restart(deployment.pk)
        self.event(deployment, kind, f"{reason}; restarting in {delay:.0f} s", exit_code=code, log_tail=tail)
        self._mark(deployment, DeploymentStatus.DEGRADED, reason)

    def schedule_restart(self, key) -> float:
        backoff = self.backoff.setdefault(key, Backoff(settings.WORKER_BACKOFF_BASE_S, settings.WORKER_BACKOFF_MAX_S))
        delay = backoff.next_delay()
        backoff.not_before = self.clock() + delay
        return delay

    def _stop_worker(self, deployment_id: int, reason: str) -> None:
        worker = self.workers.pop(deployment_id, None)
        if worker is None:
            return
        code = worker.terminate()
        deployment = Deployment.objects.filter(pk=deployment_id).first()
        if deployment is not None:
            self.event(
                deployment, WorkerEventKind.STOPPED, f"worker stopped ({reason}), exit code {code}", exit_code=code
            )
            Deployment.objects.filter(pk=deployment_id).update(
                status=DeploymentStatus.STOPPED,
                status_detail=reason,
                worker_url="",
                worker_pid=None,
                applied_revision=None,
            )

    def adopt(self, deployment: Deployment, worker: WorkerProcess, revision: int, message: str) -> None:
        """Make ``worker`` (a promoted canary) the deployment's stable worker; the old one retires after a grace
        period in which requests the gateway already routed to it finish."""
        old = self.workers.get(deployment.pk)
        worker.revision = revision
        worker.healthy_since = worker.healthy_since or self.clock()
        self.workers[deployment.pk] = worker
        if old is not None and old is not worker:
            self.retiring.append((old, self.clock() + settings.GATEWAY_ROUTE_CACHE_S + settings.WORKER_RETIRE_GRACE_S))
        Deployment.objects.filter(pk=deployment.pk).update(
            worker_url=worker.url,
            worker_pid=worker.popen.pid,
            applied_revision=revision,
            status=DeploymentStatus.RUNNING,
            status_detail=f"serving revision {revision} on {worker.url} (pid {worker.popen.pid})",
        )
        publish_served_revision(deployment.pk, revision)
        self.event(deployment, WorkerEventKind.SWAPPED, message, details={"pid": worker.popen.pid, "port": worker.port})

    def _retire_due(self) -> bool:
        due = [(worker, at) for worker, at in self.retiring if at <= self.clock()]
        for worker, at in due:
            self.retiring.remove((worker, at))
            code = worker.terminate()
            logger.info("retired the replaced worker pid %s (exit code %s)", worker.popen.pid, code)
        return bool(due)

    def on_stop(self) -> None:
        """Stop every worker (the control plane is shutting down): no orphan keeps memory or a port."""
        self.canaries.stop_all()
        for worker, _ in self.retiring:
            worker.terminate()
        self.retiring.clear()
        for deployment_id in list(self.workers):
            self._stop_worker(deployment_id, "the control plane stopped")
        deployment_changed.disconnect(dispatch_uid="supervisor")

    # --- applying revisions ------------------------------------------------------------------------------------------
    def client(self, deployment: Deployment, worker: WorkerProcess) -> WorkerClient:
        """The worker's client, kept with it (one connection pool per worker)."""
        if worker.client is None:
            worker.client = WorkerClient.for_deployment(deployment.pk, worker.url)
        return worker.client

    def apply(self, deployment: Deployment, worker: WorkerProcess, *, initial: bool = False) -> None:
        """Bring the worker to the deployment's current revision: a swap when the model or precision changed,
        then the live config."""
        revision: DeploymentRevision = deployment.current_revision
        model_key = (revision.model_version_id, revision.config["precision"])
        client = self.client(deployment, worker)
        try:
            if model_key != worker.model_key:
                version = revision.model_version
                client.swap(
                    version.artifact_path, revision.config["precision"], sha256=version.sha256, model_id=deployment.name
                )
                self.event(
                    deployment,
                    WorkerEventKind.SWAPPED,
                    f"swapped to {version} at {revision.config['precision']} (revision {revision.number})",
                )
                worker.model_key = model_key
            applied = client.patch_config(live_config(revision.config))
        except WorkerError as exc:
            self.event(
                deployment,
                WorkerEventKind.ERROR,
                f"revision {revision.number} not applied: {exc.message}",
                details={"status": exc.status, "body": exc.body},
            )
            self.refused[deployment.pk] = revision.number
            Deployment.objects.filter(pk=deployment.pk).update(
                status=DeploymentStatus.DEGRADED,
                worker_url=worker.url,
                status_detail=f"serving revision {worker.revision}; revision {revision.number} was refused: "
                f"{exc.message}"[:500],
            )
            return
        self.refused.pop(deployment.pk, None)
        worker.revision = revision.number
        if not initial:
            self.event(
                deployment,
                WorkerEventKind.CONFIG_APPLIED,
                f"revision {revision.number} applied",
                details={"config": applied},
            )
        with transaction.atomic():
            Deployment.objects.filter(pk=deployment.pk).update(
                applied_revision=revision.number,
                status=DeploymentStatus.RUNNING,
                worker_url=worker.url,
                status_detail=f"serving revision {revision.number} on {worker.url} (pid {worker.popen.pid})",
            )
        publish_served_revision(deployment.pk, revision.number)

    # --- records -----------------------------------------------------------------------------------------------------
    def event(self, deployment: Deployment, kind: str, message: str, **fields) -> WorkerEvent:
        logger.info("%s: %s", deployment.name, message)
        return WorkerEvent.objects.create(deployment=deployment, kind=kind, message=message[:500], **fields)

    def _mark(self, deployment: Deployment, status: str, detail: str) -> None:
        Deployment.objects.filter(pk=deployment.pk).update(status=status, status_detail=detail[:500], worker_url="")


def _factory() -> Supervisor | None:
    if not settings.SUPERVISOR_ENABLED:
        return None
    from controlplane.services.inventory import register_local_node

    return Supervisor(register_local_node())


runtime.register(_factory, order=10)
