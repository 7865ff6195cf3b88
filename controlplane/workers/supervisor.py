"""The supervisor: keeps this node's deployments served, through the node's ``WorkerPool``.

Each step reconciles what the database wants with what runs: start what should run, stop what should not, record
what the pool found (a worker that exited or stopped answering is restarted with backoff, an event with the exit
code and the last log lines each time), and apply new revisions: a live setting through the worker's control API, a
model or precision change by a swap inside the worker that keeps requests in flight, and a change that needs a new
process (a ``restart`` setting of the worker contract, or an operator's restart) by a new worker beside the old one:
traffic switches when it is ready, the old one finishes its requests, then stops. When a second copy does not fit,
the worker is stopped and started again instead, and the deployment says so.

The canaries of rollouts run in the same pool (``controlplane.rollouts.canaries``). Changes made in any process reach
the supervisor: it polls the database; the ``deployment_changed`` signal only wakes it early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

from controlplane import runtime
from controlplane.choices import DeploymentStatus, DesiredState, WorkerEventKind
from controlplane.models import Deployment, DeploymentRevision, Node
from controlplane.rollouts.canaries import Canaries
from controlplane.services.deployment_config import restart_keys
from controlplane.services.deployments import deployment_changed
from controlplane.services.inventory import heartbeat, register_local_node
from controlplane.workers import records
from controlplane.workers.actions import restart_plan
from controlplane.workers.launch import live_config, make_pool, next_key, stable_key, worker_spec
from controlplane.workers.pool import Change, ControlError, Outcome, Worker, WorkerPool

logger = logging.getLogger(__name__)

__all__ = ["Supervisor"]

FAILURE_KINDS = {Change.EXITED: WorkerEventKind.EXITED, Change.UNHEALTHY: WorkerEventKind.UNHEALTHY}


class Supervisor(runtime.ServiceThread):
    name = "supervisor"
    idle_s = 1.0

    def __init__(
        self, node: Node | None = None, *, clock: Callable[[], float] = time.monotonic, pool: WorkerPool | None = None
    ) -> None:
        super().__init__()
        self.node_id = node.pk if node else None
        self.pool = pool or make_pool(clock)
        # Revisions a worker refused (bad config for this worker): not retried until the revision changes.
        self.refused: dict[int, int] = {}
        # Restart requests whose replacement failed: not retried (the old worker keeps serving), by deployment id.
        self.given_up: dict[int, float] = {}
        self.canaries = Canaries(self.pool)
        deployment_changed.connect(self._on_change, dispatch_uid="supervisor")

    def _on_change(self, sender: Any, deployment: Deployment, **kwargs: Any) -> None:
        self.wake()

    # --- the loop ----------------------------------------------------------------------------------------------------
    def step(self) -> bool:
        heartbeat(self.node_id)  # this node's control plane runs; deployments of nodes whose one stopped say so
        deployments = list(self._local_deployments())
        did_work = self.canaries.step(deployments)
        for deployment in deployments:
            did_work |= self.reconcile(deployment)
        for worker, code in self.pool.step_retiring():
            logger.info("retired the replaced worker pid %s (exit code %s)", worker.pid, code)
            did_work = True
        known = {stable_key(d.pk) for d in deployments} | {next_key(d.pk) for d in deployments}
        for key in [k for k in self.pool.workers if k.startswith("deployment:") and k not in known]:
            self._stop_deployment(int(key.split(":")[1]), "the deployment is gone from this node")
            did_work = True
        return did_work

    def _local_deployments(self) -> Any:
        queryset = Deployment.objects.select_related("current_revision__model_version", "node")
        if self.node_id is not None:
            queryset = queryset.filter(node_id=self.node_id)
        return queryset.filter(current_revision__isnull=False)

    def reconcile(self, deployment: Deployment) -> bool:
        key = stable_key(deployment.pk)
        if deployment.desired_state == DesiredState.STOPPED:
            if self.pool.get(key) is not None or self.pool.get(next_key(deployment.pk)) is not None:
                self._stop_deployment(deployment.pk, "stopped by request")
                return True
            return False
        if self.pool.get(key) is None:
            if not self.pool.due(key):
                return False
            self.start_worker(deployment)
            return True
        outcome = self.pool.check(key)
        assert outcome is not None
        if outcome.failed:
            self._failed(deployment, outcome)
            return True
        if outcome.change == Change.STARTING:
            self._show_progress(deployment, outcome)
            return False
        if outcome.change == Change.READY:
            self.apply(deployment, outcome.worker, initial=True)
            return True
        return self._keep_current(deployment, outcome.worker)

    def _keep_current(self, deployment: Deployment, worker: Worker) -> bool:
        """A healthy worker serves: replace it when asked to, or apply the current revision to it."""
        reason = self._replacement_reason(deployment, worker)
        if reason:
            return self._replace(deployment, worker, reason)
        number = _revision(deployment).number
        if number != deployment.applied_revision and self.refused.get(deployment.pk) != number:
            self.apply(deployment, worker)
            return True
        return False

    # --- starting, failing, stopping ---------------------------------------------------------------------------------
    def start_worker(self, deployment: Deployment, key: str | None = None) -> Worker:
        revision = _revision(deployment)
        spec = worker_spec(deployment, deployment.name, revision.model_version, revision.config, revision.number)
        worker = self.pool.start(key or stable_key(deployment.pk), spec)
        if key is None:
            Deployment.objects.filter(pk=deployment.pk).update(
                status=DeploymentStatus.STARTING,
                status_detail=f"starting worker (pid {worker.pid}, port {worker.port})",
                worker_pid=worker.pid,
                worker_url="",
            )
        records.event(
            deployment,
            WorkerEventKind.STARTED,
            f"worker started: pid {worker.pid}, port {worker.port}, revision {revision.number}",
            details={"pid": worker.pid, "port": worker.port},
        )
        return worker

    def _show_progress(self, deployment: Deployment, outcome: Outcome, prefix: str = "") -> None:
        """While a worker loads its model, the deployment's status says how far it is (shown on its page)."""
        loading = outcome.progress
        if not loading:
            return
        detail = (
            f"{prefix}loading the model: {loading.get('percent', 0):.0f}% ({loading.get('message', '')}), "
            f"pid {outcome.worker.pid}"
        )
        Deployment.objects.filter(pk=deployment.pk).update(status_detail=detail[:500])

    def _failed(self, deployment: Deployment, outcome: Outcome) -> None:
        self.pool.stop(next_key(deployment.pk))  # a replacement under way is moot: a fresh worker starts anyway
        message = f"{outcome.reason}; restarting in {outcome.retry_in_s:.0f} s"
        records.event(
            deployment,
            FAILURE_KINDS[outcome.change],
            message,
            exit_code=outcome.exit_code,
            log_tail=outcome.log_tail,
        )
        records.mark(deployment, DeploymentStatus.DEGRADED, message)

    def _stop_deployment(self, deployment_id: int, reason: str) -> None:
        spare = self.pool.stop(next_key(deployment_id))
        worker = self.pool.stop(stable_key(deployment_id))
        deployment = Deployment.objects.filter(pk=deployment_id).first()
        if deployment is None or (worker is None and spare is None):
            return
        code = worker.exit_code() if worker else None
        records.event(
            deployment, WorkerEventKind.STOPPED, f"worker stopped ({reason}), exit code {code}", exit_code=code
        )
        Deployment.objects.filter(pk=deployment_id).update(
            status=DeploymentStatus.STOPPED,
            status_detail=reason,
            worker_url="",
            worker_pid=None,
            applied_revision=None,
        )

    def on_stop(self) -> None:
        """Stop every worker (the control plane is shutting down): no orphan keeps memory or a port."""
        self.canaries.stop_all()
        for key in [k for k in self.pool.workers if k.startswith("deployment:") and not k.endswith(":next")]:
            self._stop_deployment(int(key.split(":")[1]), "the control plane stopped")
        self.pool.stop_all()
        deployment_changed.disconnect(dispatch_uid="supervisor")

    # --- replacing a worker without dropping requests ----------------------------------------------------------------
    def _replacement_reason(self, deployment: Deployment, worker: Worker) -> str:
        requested = deployment.restart_requested_at
        if requested and requested.timestamp() > worker.started_wall:
            if self.given_up.get(deployment.pk) == requested.timestamp():
                return ""
            return "restart requested"
        revision = _revision(deployment)
        if revision.number != worker.revision and self.refused.get(deployment.pk) != revision.number:
            changed = restart_keys(worker.spec.config, revision.config)
            if changed:
                return f"{', '.join(changed)} changed (revision {revision.number}); that needs a new worker"
        return ""

    def _replace(self, deployment: Deployment, worker: Worker, reason: str) -> bool:
        """One step of replacing ``worker``: start the new one beside it, wait until it is ready, switch, retire."""
        key = next_key(deployment.pk)
        if self.pool.get(key) is None:
            if not self.pool.due(key):
                return False
            plan = restart_plan(deployment)
            if not plan.rolling:
                return self._stop_start(deployment, worker, reason, plan.detail)
            new = self.start_worker(deployment, key)
            records.mark(
                deployment,
                DeploymentStatus.RUNNING,
                f"restarting ({reason}): new worker pid {new.pid} is starting; "
                f"pid {worker.pid} serves until it is ready",
                keep_url=True,
            )
            return True
        outcome = self.pool.check(key)
        assert outcome is not None
        if outcome.failed:
            self._replacement_failed(deployment, worker, outcome)
            return True
        if outcome.change == Change.STARTING:
            self._show_progress(
                deployment, outcome, prefix=f"restarting ({reason}); pid {worker.pid} serves; new worker "
            )
            return False
        if outcome.change == Change.READY:
            self._switch(deployment, worker, outcome.worker, reason)
            return True
        return False

    def _switch(self, deployment: Deployment, old: Worker, new: Worker, reason: str) -> None:
        revision = _revision(deployment)
        try:
            self.pool.control(new).patch_config(live_config(revision.config))
        except ControlError as exc:
            self.pool.stop(next_key(deployment.pk))
            self._refuse(deployment, old, revision, exc)
            return
        self.pool.promote(next_key(deployment.pk), stable_key(deployment.pk))
        self.given_up.pop(deployment.pk, None)
        self.refused.pop(deployment.pk, None)
        records.serving(deployment, new, revision.number)
        records.event(
            deployment,
            WorkerEventKind.SWAPPED,
            f"replaced without downtime ({reason}): pid {new.pid} serves revision {revision.number}; "
            f"pid {old.pid} finishes the requests it has, then stops",
            details={"pid": new.pid, "port": new.port, "replaced_pid": old.pid},
        )

    def _replacement_failed(self, deployment: Deployment, worker: Worker, outcome: Outcome) -> None:
        requested = deployment.restart_requested_at
        if requested and requested.timestamp() > worker.started_wall:
            self.given_up[deployment.pk] = requested.timestamp()
        else:
            self.refused[deployment.pk] = _revision(deployment).number
        message = f"the new worker failed ({outcome.reason}); pid {worker.pid} keeps serving"
        records.event(
            deployment, FAILURE_KINDS[outcome.change], message, exit_code=outcome.exit_code, log_tail=outcome.log_tail
        )
        records.mark(deployment, DeploymentStatus.DEGRADED, message, keep_url=True)

    def _stop_start(self, deployment: Deployment, worker: Worker, reason: str, why: str) -> bool:
        self.pool.stop(stable_key(deployment.pk))
        code = worker.exit_code()
        records.event(
            deployment,
            WorkerEventKind.STOPPED,
            f"worker pid {worker.pid} stopped to restart it ({reason}); {why}",
            exit_code=code,
        )
        self.start_worker(deployment)
        return True

    # --- applying revisions ------------------------------------------------------------------------------------------
    def apply(self, deployment: Deployment, worker: Worker, *, initial: bool = False) -> None:
        """Bring the worker to the deployment's current revision: a swap when the model or precision changed,
        then the live config."""
        revision = _revision(deployment)
        model_key = (revision.model_version_id, revision.config["precision"])
        control = self.pool.control(worker)
        try:
            if model_key != worker.model_key:
                version = revision.model_version
                control.swap(
                    version.artifact_path, revision.config["precision"], sha256=version.sha256, model_id=deployment.name
                )
                records.event(
                    deployment,
                    WorkerEventKind.SWAPPED,
                    f"swapped to {version} at {revision.config['precision']} (revision {revision.number})",
                )
                worker.model_key = model_key
            applied = control.patch_config(live_config(revision.config))
        except ControlError as exc:
            self._refuse(deployment, worker, revision, exc)
            return
        self.refused.pop(deployment.pk, None)
        if not initial:
            records.event(
                deployment,
                WorkerEventKind.CONFIG_APPLIED,
                f"revision {revision.number} applied",
                details={"config": applied},
            )
        records.serving(deployment, worker, revision.number)

    def _refuse(self, deployment: Deployment, worker: Worker, revision: DeploymentRevision, exc: ControlError) -> None:
        records.event(
            deployment,
            WorkerEventKind.ERROR,
            f"revision {revision.number} not applied: {exc.message}",
            details={"status": exc.status, "body": exc.body},
        )
        self.refused[deployment.pk] = revision.number
        Deployment.objects.filter(pk=deployment.pk).update(
            status=DeploymentStatus.DEGRADED,
            worker_url=worker.url,
            status_detail=f"serving revision {worker.revision}; revision {revision.number} was refused: {exc.message}"[
                :500
            ],
        )


def _revision(deployment: Deployment) -> DeploymentRevision:
    """The current revision of a deployment the supervisor looks after (``_local_deployments`` keeps only those
    with one)."""
    revision = deployment.current_revision
    assert revision is not None
    return revision


def _factory() -> Supervisor | None:
    if not settings.SUPERVISOR_ENABLED:
        return None
    return Supervisor(register_local_node())


runtime.register(_factory, order=10)
