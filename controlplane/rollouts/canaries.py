"""Canary workers: the supervisor's part of a rollout.

While a rollout is active, a second worker serves its candidate beside the stable one; once healthy it is reported
ready (``rollouts.canary_ready``) and the gateway starts sending it its share of traffic. When the rollout is
promoted the canary's process becomes the stable worker (no reload); when it is rolled back, aborted or failed the
canary is stopped and its memory freed. After a control-plane restart the canary of a still-active rollout is
started again and the rollout carries on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from controlplane.choices import RolloutStatus, WorkerEventKind
from controlplane.models import Deployment, Rollout
from controlplane.rollouts import machine as rollouts
from controlplane.workers.client import WorkerError

if TYPE_CHECKING:
    from controlplane.workers.supervisor import Supervisor, WorkerProcess

logger = logging.getLogger(__name__)


class Canaries:
    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor
        self.workers: dict[int, WorkerProcess] = {}  # rollout id → its canary worker

    def step(self, deployments: list[Deployment]) -> bool:
        local = {d.pk: d for d in deployments}
        active = [r for r in rollouts.active_rollouts() if r.deployment_id in local]
        did_work = False
        for rollout in active:
            did_work |= self.reconcile(local[rollout.deployment_id], rollout)
        active_ids = {r.pk for r in active}
        for rollout_id in [pk for pk in self.workers if pk not in active_ids]:
            self.finish(Rollout.objects.select_related("deployment", "result_revision").get(pk=rollout_id))
            did_work = True
        return did_work

    def reconcile(self, deployment: Deployment, rollout: Rollout) -> bool:
        worker = self.workers.get(rollout.pk)
        if worker is None:
            return self._start(deployment, rollout)
        if worker.exit_code() is not None:
            self._lost(
                deployment, rollout, f"the canary worker exited with code {worker.exit_code()}", worker.log_tail()
            )
            return True
        if worker.healthy_since is None:
            return self._check_starting(deployment, rollout, worker)
        return self._check_health(deployment, rollout, worker)

    def _start(self, deployment: Deployment, rollout: Rollout) -> bool:
        if not self.supervisor.restart_due(f"canary-{rollout.pk}"):
            return False
        if rollout.canary_url:  # a canary from before a restart of the control plane
            rollouts.canary_gone(rollout, "the control plane restarted; starting the canary again")
        worker = self.supervisor.spawn(
            deployment,
            f"{deployment.name}-canary-{rollout.pk}",
            rollout.target_model_version,
            rollout.target_config,
            rollout.base_revision.number,
        )
        self.workers[rollout.pk] = worker
        self.supervisor.event(
            deployment,
            WorkerEventKind.STARTED,
            f"canary worker for rollout {rollout.pk} started: pid {worker.popen.pid}, "
            f"port {worker.port}, {rollout.target_model_version}",
        )
        return True

    def _check_starting(self, deployment: Deployment, rollout: Rollout, worker: WorkerProcess) -> bool:
        client = self.supervisor.client(deployment, worker)
        try:
            client.ready()
            client.patch_config(_live(rollout.target_config))
        except WorkerError as exc:
            if self.supervisor.clock() - worker.started > self.supervisor.start_timeout:
                reason = f"the canary was not healthy in time: {exc.message}"
                self._lost(deployment, rollout, reason, worker.log_tail(), terminate=True)
                return True
            return False
        worker.healthy_since = worker.last_health_check = self.supervisor.clock()
        rollouts.canary_ready(rollout, worker.url, worker.popen.pid)
        return True

    def _check_health(self, deployment: Deployment, rollout: Rollout, worker: WorkerProcess) -> bool:
        if not self.supervisor.health_due(worker):
            return False
        try:
            self.supervisor.client(deployment, worker).health()
        except WorkerError as exc:
            worker.health_failures += 1
            if worker.health_failures >= self.supervisor.health_failures:
                reason = f"the canary failed its health check: {exc.message}"
                self._lost(deployment, rollout, reason, worker.log_tail(), terminate=True)
                return True
            return False
        worker.health_failures = 0
        return False

    def _lost(self, deployment, rollout, reason: str, log_tail: str, terminate: bool = False) -> None:
        worker = self.workers.pop(rollout.pk)
        code = worker.terminate() if terminate else worker.exit_code()
        delay = self.supervisor.schedule_restart(f"canary-{rollout.pk}")
        self.supervisor.event(
            deployment,
            WorkerEventKind.EXITED,
            f"{reason}; restarting in {delay:.0f} s",
            exit_code=code,
            log_tail=log_tail,
        )
        rollouts.canary_gone(rollout, reason)

    def finish(self, rollout: Rollout) -> None:
        """The rollout ended: hand the canary the stable role (promoted) or stop it and free its memory."""
        worker = self.workers.pop(rollout.pk)
        deployment = rollout.deployment
        if rollout.status == RolloutStatus.PROMOTED and rollout.result_revision and worker.exit_code() is None:
            self.supervisor.adopt(
                deployment,
                worker,
                rollout.result_revision.number,
                f"rollout {rollout.pk} promoted: its canary worker (pid {worker.popen.pid}) now "
                f"serves revision {rollout.result_revision.number}",
            )
            return
        code = worker.terminate()
        self.supervisor.event(
            deployment,
            WorkerEventKind.STOPPED,
            f"canary worker of rollout {rollout.pk} stopped ({rollout.get_status_display()}), "
            f"its memory freed; exit code {code}",
            exit_code=code,
        )

    def stop_all(self) -> None:
        for worker in self.workers.values():
            worker.terminate()
        self.workers.clear()


def _live(config: dict) -> dict:
    from controlplane.workers.supervisor import live_config

    return live_config(config)
