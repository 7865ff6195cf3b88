"""The supervisor over a WorkerPool with fake processes: what it starts, live config vs a new worker, rolling
restarts that keep the old worker serving until the new one is ready, and failures."""

from __future__ import annotations

import pytest

from controlplane.choices import DeploymentStatus, WorkerEventKind
from controlplane.models import AuditEvent, Deployment, WorkerEvent
from controlplane.services import deployments
from controlplane.services.fit import estimate_memory
from controlplane.workers import actions

pytestmark = pytest.mark.django_db


def serve(supervisor, fake_launcher, deployment) -> None:
    """Start the deployment's worker and let it become ready."""
    supervisor.step()
    fake_launcher.states.setdefault(
        _url(fake_launcher, -1), fake_launcher.control(_url(fake_launcher, -1)).state
    ).ready = True
    supervisor.step()
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.RUNNING, deployment.status_detail


def _url(fake_launcher, index: int) -> str:
    argv = fake_launcher.processes[index].argv
    return f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_the_worker_starts_with_every_setting_of_its_config_as_a_flag_and_no_secret(
    supervisor, fake_launcher, deployment, monkeypatch
):
    monkeypatch.setenv("ADMIN_PASSWORD", "hunter2")
    monkeypatch.setenv("REDIS_URL", "redis://secret@host/0")
    monkeypatch.setenv("EMAIL_HOST_PASSWORD", "x")
    monkeypatch.setenv("CUDA_HOME", "/usr/local/cuda")
    serve(supervisor, fake_launcher, deployment)
    process = fake_launcher.processes[0]
    config = deployment.config
    assert _flag(process.argv, "--max-batch-size") == str(config["max_batch_size"])
    assert _flag(process.argv, "--session-timeout-s") == str(config["session_timeout_s"])
    assert _flag(process.argv, "--precision") == "fp32" and _flag(process.argv, "--device") == "cpu"
    assert "--cache-ttl-s" not in process.argv  # the control plane's own keys stay with it
    assert not {"ADMIN_PASSWORD", "REDIS_URL", "EMAIL_HOST_PASSWORD", "SECRET_KEY"} & set(process.env)
    assert process.env["CUDA_HOME"] == "/usr/local/cuda" and process.env["WORKER_CONTROL_TOKEN"]
    deployment.refresh_from_db()
    assert deployment.worker_url == _url(fake_launcher, 0) and deployment.applied_revision == 1


def test_a_live_setting_is_applied_to_the_running_worker_without_a_new_process(
    supervisor, fake_launcher, deployment, actor
):
    serve(supervisor, fake_launcher, deployment)
    deployments.update_deployment(actor, deployment, config={"max_batch_size": 7})
    supervisor.step()
    state = fake_launcher.states[_url(fake_launcher, 0)]
    assert state.config_patches[-1]["max_batch_size"] == 7 and len(fake_launcher.processes) == 1
    assert WorkerEvent.objects.filter(deployment=deployment, kind=WorkerEventKind.CONFIG_APPLIED).exists()


def test_a_restart_setting_starts_a_new_worker_beside_the_old_one_and_switches_when_it_is_ready(
    supervisor, fake_launcher, deployment, actor, fake_clock
):
    serve(supervisor, fake_launcher, deployment)
    old_url = _url(fake_launcher, 0)
    deployments.update_deployment(actor, deployment, config={"torch_threads": 1})
    supervisor.step()
    assert len(fake_launcher.processes) == 2 and _flag(fake_launcher.processes[1].argv, "--torch-threads") == "1"
    deployment.refresh_from_db()
    assert deployment.worker_url == old_url and "new worker pid" in deployment.status_detail  # the old one serves
    new_url = _url(fake_launcher, 1)
    fake_launcher.states.setdefault(new_url, fake_launcher.control(new_url).state).ready = True
    fake_launcher.states[old_url].inflight = 1
    supervisor.step()
    deployment.refresh_from_db()
    assert deployment.worker_url == new_url and deployment.applied_revision == 2
    assert not fake_launcher.processes[0].terminated  # retiring: the gateway may still route to it for a moment
    fake_clock.advance(7)
    supervisor.step()
    assert not fake_launcher.processes[0].terminated  # it still holds a request
    fake_launcher.states[old_url].inflight = 0
    supervisor.step()
    assert fake_launcher.processes[0].terminated and not fake_launcher.processes[1].terminated


def test_an_operators_restart_is_rolling_audited_and_raises_no_restart_alert(
    supervisor, fake_launcher, deployment, actor, fake_clock
):
    serve(supervisor, fake_launcher, deployment)
    fake_clock.advance(1)
    plan = actions.request_restart(actor, Deployment.objects.get(pk=deployment.pk))
    assert plan.mode == "rolling" and "No request is dropped" in plan.detail
    supervisor.step()
    assert len(fake_launcher.processes) == 2
    new_url = _url(fake_launcher, 1)
    fake_launcher.states.setdefault(new_url, fake_launcher.control(new_url).state).ready = True
    supervisor.step()
    deployment.refresh_from_db()
    assert deployment.worker_url == new_url and deployment.worker_pid == fake_launcher.processes[1].pid
    kinds = set(WorkerEvent.objects.filter(deployment=deployment).values_list("kind", flat=True))
    assert WorkerEventKind.SWAPPED in kinds and not kinds & {WorkerEventKind.RESTARTED, WorkerEventKind.EXITED}
    assert AuditEvent.objects.filter(action="deployment.restart").exists()
    supervisor.step()
    assert len(fake_launcher.processes) == 2  # done: the new worker started after the request


def test_a_restart_without_room_for_a_second_copy_stops_and_starts_and_says_so(
    supervisor, fake_launcher, deployment, actor, cpu_node
):
    serve(supervisor, fake_launcher, deployment)
    need = estimate_memory(deployment.model_version, deployment.config, on_gpu=False).total_bytes
    cpu_node.memory_bytes = int(need * 1.5 / 0.8)  # room for one copy with the headroom, not for two
    cpu_node.save()
    plan = actions.request_restart(actor, Deployment.objects.select_related("node").get(pk=deployment.pk))
    assert plan.mode == "stop_start" and "does not fit" in plan.detail
    supervisor.step()
    assert fake_launcher.processes[0].terminated and len(fake_launcher.processes) == 2
    assert WorkerEvent.objects.filter(kind=WorkerEventKind.STOPPED, message__contains="does not fit").exists()


def test_a_replacement_that_fails_leaves_the_old_worker_serving_and_is_not_retried(
    supervisor, fake_launcher, deployment, actor, fake_clock
):
    serve(supervisor, fake_launcher, deployment)
    fake_clock.advance(1)
    actions.request_restart(actor, Deployment.objects.get(pk=deployment.pk))
    supervisor.step()
    fake_launcher.processes[1].code = 1
    supervisor.step()
    deployment.refresh_from_db()
    assert deployment.worker_url == _url(fake_launcher, 0) and "keeps serving" in deployment.status_detail
    fake_clock.advance(120)
    supervisor.step()
    assert len(fake_launcher.processes) == 2


def test_a_crashed_worker_is_recorded_and_started_again_after_its_backoff(
    supervisor, fake_launcher, deployment, fake_clock
):
    serve(supervisor, fake_launcher, deployment)
    fake_launcher.processes[0].code = 137
    supervisor.step()
    deployment.refresh_from_db()
    event = WorkerEvent.objects.get(deployment=deployment, kind=WorkerEventKind.EXITED)
    assert event.exit_code == 137 and deployment.status == DeploymentStatus.DEGRADED and deployment.worker_url == ""
    supervisor.step()
    assert len(fake_launcher.processes) == 1  # backing off
    fake_clock.advance(1)
    supervisor.step()
    assert len(fake_launcher.processes) == 2


def test_a_revision_the_worker_refuses_is_reported_and_not_retried(supervisor, fake_launcher, deployment, actor):
    serve(supervisor, fake_launcher, deployment)
    fake_launcher.states[_url(fake_launcher, 0)].refuse_config = "router_weights needs 8 values"
    deployments.update_deployment(actor, deployment, config={"max_queue": 9})
    supervisor.step()
    supervisor.step()
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.DEGRADED and "was refused" in deployment.status_detail
    assert WorkerEvent.objects.filter(kind=WorkerEventKind.ERROR).count() == 1
