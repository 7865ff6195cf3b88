"""A worker whose model failed to load fails at once, with the worker's reason, instead of waiting out the start
timeout; and a corrupt artifact is refused at registration, naming the file."""

from __future__ import annotations

import shutil

import pytest

from controlplane.choices import DeploymentStatus, RolloutStatus, WorkerEventKind
from controlplane.models import WorkerEvent
from controlplane.rollouts import machine as rollouts
from controlplane.services import registry
from controlplane.services.errors import InvalidInput
from controlplane.workers.launch import ClientControl
from controlplane.workers.pool import Change, PoolSettings, WorkerPool, WorkerSpec
from inference.__main__ import DEMO_MODEL
from inference.artifacts import artifact_digest

from .fakes import Clock, FakeLauncher, ports


def _pool(tmp_path):
    launcher = FakeLauncher()
    pool = WorkerPool(
        launcher, settings=PoolSettings(start_timeout_s=300), log_dir=tmp_path, clock=Clock(), port_for=ports()
    )
    spec = WorkerSpec(
        name="demo", command=lambda port: ["worker", str(port)], env={}, control=launcher.control, revision=1
    )
    return pool, launcher, spec


def test_a_worker_whose_load_failed_fails_at_once_with_the_workers_reason(tmp_path):
    pool, launcher, spec = _pool(tmp_path)
    worker = pool.start("deployment:1", spec)
    launcher.state(worker).progress = {"phase": "failed", "error": "checkpoint x/model.safetensors: sha256 is ab"}
    outcome = pool.check("deployment:1")
    assert outcome.failed and outcome.change == Change.UNHEALTHY
    assert outcome.reason == "the model failed to load: checkpoint x/model.safetensors: sha256 is ab"
    assert outcome.load_error.startswith("checkpoint x/model.safetensors")
    assert pool.get("deployment:1") is None and launcher.processes[0].terminated
    assert outcome.retry_in_s > 0  # restarted only after its backoff


def test_a_worker_still_loading_keeps_starting(tmp_path):
    pool, launcher, spec = _pool(tmp_path)
    worker = pool.start("deployment:1", spec)
    launcher.state(worker).progress = {"phase": "loading", "percent": 10.0}
    outcome = pool.check("deployment:1")
    assert outcome.change == Change.STARTING and not outcome.load_error


class _Client:
    def __init__(self, status):
        self.reply = status

    def status(self):
        return self.reply


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"phase": "failed", "loading": {"phase": "failed", "error": "bad sha256"}}, "bad sha256"),
        ({"phase": "loading", "loading": {"phase": "loading", "percent": 5.0}}, None),
        ({"phase": "ready", "loading": {"phase": "ready"}}, None),
    ],
)
def test_the_control_client_reports_a_failed_load_as_a_failed_phase_with_its_error(status, expected):
    progress = ClientControl(_Client(status)).progress()  # type: ignore[arg-type]
    if expected is None:
        assert progress is None or progress["phase"] == "loading"
    else:
        assert progress == {"phase": "failed", "error": expected}


@pytest.mark.django_db
def test_a_checkpoint_whose_file_does_not_match_its_manifest_is_refused_at_registration(actor, model_dir):
    corrupt = model_dir / "corrupt"
    shutil.copytree(DEMO_MODEL, corrupt)
    with (corrupt / "model.safetensors").open("ab") as handle:
        handle.write(b"garbage")
    with pytest.raises(InvalidInput) as caught:
        registry.register_model_version(actor, name="demo", version="bad", artifact_path=str(corrupt))
    message = str(caught.value.errors["artifact_path"])
    assert "model.safetensors does not match manifest.json" in message


@pytest.mark.django_db
def test_a_file_listed_in_the_manifest_but_missing_is_refused(actor, model_dir):
    missing = model_dir / "missing"
    shutil.copytree(DEMO_MODEL, missing)
    (missing / "config.json").unlink()
    with pytest.raises(InvalidInput):
        registry.register_model_version(actor, name="demo", version="bad", artifact_path=str(missing))


@pytest.mark.django_db
def test_a_sound_checkpoint_with_a_manifest_is_registered_with_the_same_digest(actor, model_dir):
    sound = model_dir / "sound"
    shutil.copytree(DEMO_MODEL, sound)
    version = registry.register_model_version(actor, name="demo", version="ok", artifact_path=str(sound))
    assert version.sha256 == artifact_digest(sound)


# --- the supervisor and the canaries record the worker's reason ------------------------------------------------------
LOAD_ERROR = "checkpoint /m/model.safetensors: sha256 is 9d8a but manifest.json says 2b12"


def _fail_load(launcher, index: int = -1) -> None:
    argv = launcher.processes[index].argv
    url = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"
    launcher.control(url).state.progress = {"phase": "failed", "error": LOAD_ERROR}


@pytest.mark.django_db
def test_the_supervisor_records_a_failed_load_at_once_with_the_workers_reason(supervisor, fake_launcher, deployment):
    supervisor.step()
    _fail_load(fake_launcher)
    supervisor.step()
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.DEGRADED
    assert f"the model failed to load: {LOAD_ERROR}" in deployment.status_detail
    event = WorkerEvent.objects.filter(deployment=deployment, kind=WorkerEventKind.UNHEALTHY).get()
    assert LOAD_ERROR in event.message


@pytest.mark.django_db
def test_a_canary_that_cannot_load_its_candidate_fails_the_rollout_with_the_reason(
    supervisor, fake_launcher, actor, deployment, checkpoint
):
    v2 = registry.register_model_version(actor, name="demo", version="v2", artifact_path=str(checkpoint))
    rollout = rollouts.create_rollout(actor, deployment, model_version=v2)
    supervisor.step()  # the canary starts (first), then the stable worker
    _fail_load(fake_launcher, 0)
    supervisor.step()
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.FAILED and LOAD_ERROR in rollout.reason
    messages = list(rollout.events.values_list("message", flat=True))
    assert any("canary worker down" in m and LOAD_ERROR in m for m in messages), messages
