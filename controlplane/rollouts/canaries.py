"""Canary workers: a rollout's worker, run in the node's ``WorkerPool`` beside the stable one.

While a rollout is active, a second worker serves its candidate; once ready it is reported (``canary_ready``) and
the gateway starts sending it its share of traffic. When the rollout is promoted the canary's process takes the
stable worker's place in the pool (no reload) and the old stable worker retires: it finishes what it holds, then
stops. When the rollout is rolled back, aborted or failed the canary is stopped and its memory freed. After a
control-plane restart the canary of a still-active rollout is started again and the rollout carries on.
"""

from __future__ import annotations

import logging

from controlplane.choices import RolloutStatus, WorkerEventKind
from controlplane.models import Deployment, Rollout
from controlplane.rollouts import machine as rollouts
from controlplane.services import audit
from controlplane.workers import records
from controlplane.workers.launch import canary_key, live_config, stable_key, worker_spec
from controlplane.workers.pool import Change, ControlError, WorkerPool

logger = logging.getLogger(__name__)

__all__ = ["Canaries"]


class Canaries:
    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.rollouts: set[int] = set()  # rollouts whose canary is in the pool (or being restarted)

    def step(self, deployments: list[Deployment]) -> bool:
        local = {d.pk: d for d in deployments}
        active = [r for r in rollouts.active_rollouts() if r.deployment_id in local]
        did_work = False
        for rollout in active:
            did_work |= self.reconcile(local[rollout.deployment_id], rollout)
        active_ids = {r.pk for r in active}
        for rollout_id in [pk for pk in self.rollouts if pk not in active_ids]:
            self.finish(Rollout.objects.select_related("deployment", "result_revision").get(pk=rollout_id))
            did_work = True
        return did_work

    def reconcile(self, deployment: Deployment, rollout: Rollout) -> bool:
        key = canary_key(rollout.pk)
        self.rollouts.add(rollout.pk)
        if self.pool.get(key) is None:
            return self._start(deployment, rollout)
        outcome = self.pool.check(key)
        assert outcome is not None
        if outcome.failed:
            reason = f"the canary worker failed: {outcome.reason}"
            records.event(
                deployment,
                WorkerEventKind.EXITED,
                f"{reason}; restarting in {outcome.retry_in_s:.0f} s",
                exit_code=outcome.exit_code,
                log_tail=outcome.log_tail,
            )
            rollouts.canary_gone(rollout, reason)
            if outcome.load_error:
                # The candidate itself cannot load (a corrupt artifact, too little memory): no retry will fix that.
                rollouts.rollback(
                    audit.SYSTEM,
                    rollout,
                    f"the canary could not load the candidate: {outcome.load_error}",
                    gate="health",
                    status=RolloutStatus.FAILED,
                )
            return True
        if outcome.change != Change.READY:
            return False
        worker = outcome.worker
        try:
            self.pool.control(worker).patch_config(live_config(rollout.target_config))
        except ControlError as exc:
            self.pool.stop(key)
            self.pool.schedule_retry(key)
            rollouts.canary_gone(rollout, f"the canary refused its config: {exc.message}")
            return True
        rollouts.canary_ready(rollout, worker.url, worker.pid)
        return True

    def _start(self, deployment: Deployment, rollout: Rollout) -> bool:
        key = canary_key(rollout.pk)
        if not self.pool.due(key):
            return False
        if rollout.canary_url:  # a canary from before a restart of the control plane
            rollouts.canary_gone(rollout, "the control plane restarted; starting the canary again")
        spec = worker_spec(
            deployment,
            f"{deployment.name}-canary-{rollout.pk}",
            rollout.target_model_version,
            rollout.target_config,
            rollout.base_revision.number,
        )
        worker = self.pool.start(key, spec)
        records.event(
            deployment,
            WorkerEventKind.STARTED,
            f"canary worker for rollout {rollout.pk} started: pid {worker.pid}, port {worker.port}, "
            f"{rollout.target_model_version}",
        )
        return True

    def finish(self, rollout: Rollout) -> None:
        """The rollout ended: hand the canary the stable role (promoted) or stop it and free its memory."""
        self.rollouts.discard(rollout.pk)
        key = canary_key(rollout.pk)
        worker = self.pool.get(key)
        if worker is None:
            return
        deployment = rollout.deployment
        promoted = rollout.status == RolloutStatus.PROMOTED and rollout.result_revision is not None
        if promoted and worker.exit_code() is None and worker.healthy_since is not None:
            old = self.pool.promote(key, stable_key(deployment.pk))
            assert rollout.result_revision is not None  # promoted
            revision = rollout.result_revision.number
            records.serving(deployment, worker, revision)
            replaced = f"; the old worker (pid {old.pid}) finishes its requests, then stops" if old else ""
            records.event(
                deployment,
                WorkerEventKind.SWAPPED,
                f"rollout {rollout.pk} promoted: its canary worker (pid {worker.pid}) now serves revision "
                f"{revision}{replaced}",
                details={"pid": worker.pid, "port": worker.port},
            )
            return
        self.pool.stop(key)
        records.event(
            deployment,
            WorkerEventKind.STOPPED,
            f"canary worker of rollout {rollout.pk} stopped ({rollout.get_status_display()}), "
            f"its memory freed; exit code {worker.exit_code()}",
            exit_code=worker.exit_code(),
        )

    def stop_all(self) -> None:
        for rollout_id in list(self.rollouts):
            self.pool.stop(canary_key(rollout_id))
        self.rollouts.clear()
