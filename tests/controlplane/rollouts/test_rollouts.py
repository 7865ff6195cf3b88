"""The rollout state machine, driven with a controllable clock and real request records."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from controlplane.choices import Role, RolloutStatus
from controlplane.models import AuditEvent, InferenceRecord, Node, Rollout
from controlplane.rollouts import machine as rollouts
from controlplane.services import audit, registry
from controlplane.services.deployments import create_deployment

from ..conftest import make_checkpoint

pytestmark = pytest.mark.django_db

# The windows these tests build hold 20 canary requests (and 180 stable): the gates judge from that many.
SMALL_WINDOWS = {"min_requests": 20}


@pytest.fixture
def v2(actor, model_dir):
    path = make_checkpoint(model_dir / "demo-v2", seed=1)
    return registry.register_model_version(actor, name="demo", version="v2", artifact_path=str(path))


@pytest.fixture
def rollout(actor, deployment, v2):
    return rollouts.create_rollout(actor, deployment, model_version=v2, gates=SMALL_WINDOWS, bake_s=60)


def records(deployment, variant, n, *, at, status=200, latency=0.1, tokens=20):
    InferenceRecord.objects.bulk_create(
        [
            InferenceRecord(
                at=at,
                deployment=deployment,
                variant=variant,
                endpoint="completions",
                status_code=status,
                latency_s=latency,
                completion_tokens=tokens + i % 5,
                prompt_tokens=5,
            )
            for i in range(n)
        ]
    )


def ready(rollout, url="http://127.0.0.1:9"):
    rollouts.canary_ready(rollout, url, 1234)
    rollout.refresh_from_db()
    return rollout


def test_a_rollout_starts_pending_with_default_steps_and_gates(rollout, v2):
    assert rollout.status == RolloutStatus.PENDING
    assert rollout.steps == [10, 50, 100] and rollout.weight == 0
    assert rollout.gates["max_error_rate_delta"] == 0.02
    assert rollout.target_model_version == v2 and rollout.base_revision.number == 1
    assert AuditEvent.objects.filter(action="rollout.create").exists()


def test_it_waits_for_a_healthy_canary_then_walks_the_steps_and_promotes(rollout, deployment, v2):
    start = timezone.now()
    assert rollouts.advance(rollout, now=start, clients={}).status == RolloutStatus.PENDING
    ready(rollout)
    rollout = rollouts.advance(rollout, now=start, clients={})
    assert rollout.status == RolloutStatus.RUNNING and rollout.weight == 10
    # not before the bake time is over
    assert rollouts.advance(rollout, now=start + timedelta(seconds=59), clients={}).current_step == 0
    rollout = rollouts.advance(rollout, now=start + timedelta(seconds=61), clients={})
    assert rollout.current_step == 1 and rollout.weight == 50
    rollout = rollouts.advance(rollout, now=start + timedelta(seconds=122), clients={})
    assert rollout.weight == 100
    rollout = rollouts.advance(rollout, now=start + timedelta(seconds=183), clients={})
    assert rollout.status == RolloutStatus.PROMOTED and "all 3 steps passed" in rollout.reason
    deployment.refresh_from_db()
    assert deployment.current_revision.number == 2 and deployment.model_version == v2
    assert rollout.result_revision == deployment.current_revision
    kinds = list(rollout.events.values_list("kind", flat=True))
    assert kinds.count("gates") == 3 and kinds[-1] == "decision"


def test_a_failing_error_rate_gate_rolls_back_with_the_figures(rollout, deployment):
    start = timezone.now()
    ready(rollout)
    rollouts.advance(rollout, now=start, clients={})
    records(deployment, "stable", 40, at=start + timedelta(seconds=5))
    records(deployment, "canary", 20, at=start + timedelta(seconds=5))
    records(deployment, "canary", 20, at=start + timedelta(seconds=6), status=500)
    rollout = rollouts.advance(rollout, now=start + timedelta(seconds=61), clients={})
    assert rollout.status == RolloutStatus.ROLLED_BACK
    assert rollout.failed_gate == "error_rate"
    assert "canary 50.00% vs stable 0.00% errors" in rollout.reason
    assert rollout.figures["error_rate"]["value"] == 0.5 and rollout.weight == 0
    deployment.refresh_from_db()
    assert deployment.current_revision.number == 1
    assert AuditEvent.objects.filter(action="rollout.rollback", actor_name="system").exists()


def test_a_slow_canary_fails_the_latency_gate(rollout, deployment):
    start = timezone.now()
    ready(rollout)
    rollouts.advance(rollout, now=start, clients={})
    records(deployment, "stable", 30, at=start + timedelta(seconds=1), latency=0.1)
    records(deployment, "canary", 30, at=start + timedelta(seconds=1), latency=0.4)
    rollout = rollouts.advance(rollout, now=start + timedelta(seconds=61), clients={})
    assert rollout.status == RolloutStatus.ROLLED_BACK and rollout.failed_gate == "latency"


def test_traffic_gates_are_skipped_without_enough_requests(rollout, deployment):
    start = timezone.now()
    ready(rollout)
    rollouts.advance(rollout, now=start, clients={})
    records(deployment, "canary", 3, at=start + timedelta(seconds=1), status=500)
    rollout = rollouts.advance(rollout, now=start + timedelta(seconds=61), clients={})
    assert rollout.current_step == 1
    assert rollout.figures["error_rate"]["verdict"] == "skip"
    assert "needs 20 requests" in rollout.figures["error_rate"]["detail"]


def test_pause_holds_the_step_and_resume_restarts_its_bake_time(rollout, actor):
    start = timezone.now()
    ready(rollout)
    rollouts.advance(rollout, now=start, clients={})
    rollouts.pause(actor, rollout)
    assert rollouts.advance(rollout, now=start + timedelta(hours=1), clients={}).status == RolloutStatus.PAUSED
    resumed = rollouts.resume(actor, rollout, now=start + timedelta(hours=1))
    assert resumed.status == RolloutStatus.RUNNING and resumed.weight == 10
    assert rollouts.advance(resumed, now=start + timedelta(hours=1, seconds=30), clients={}).current_step == 0


def test_illegal_transitions_get_409(clients, rollout):
    url = f"/api/v1/rollouts/{rollout.pk}/"
    assert clients[Role.OPERATOR].post(url + "rollback/", {"reason": "not today"}, format="json").status_code == 200
    response = clients[Role.OPERATOR].post(url + "promote/", {}, format="json")
    assert response.status_code == 409
    assert "it is rolled_back" in response.json()["detail"]
    assert clients[Role.OPERATOR].post(url + "resume/", {}, format="json").status_code == 409
    assert Rollout.objects.get(pk=rollout.pk).status == RolloutStatus.ROLLED_BACK


def test_a_second_active_rollout_on_a_deployment_gets_409(clients, rollout, deployment, v2):
    response = clients[Role.OPERATOR].post(
        f"/api/v1/deployments/{deployment.pk}/rollouts/", {"config": {"max_batch_size": 4}}, format="json"
    )
    assert response.status_code == 409 and "already has an active rollout" in response.json()["detail"]


def test_rollouts_are_created_over_rest_by_operators(clients, deployment, v2):
    url = f"/api/v1/deployments/{deployment.pk}/rollouts/"
    body = {"model_version": v2.pk, "steps": [25, 100], "bake_s": 30, "gates": {"max_latency_ratio": 1.2}}
    assert clients[Role.VIEWER].post(url, body, format="json").status_code == 403
    response = clients[Role.OPERATOR].post(url, body, format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["steps"] == [25, 100] and created["gates"]["max_latency_ratio"] == 1.2
    assert created["target_model_version_label"] == "demo:v2" and created["status"] == "pending"
    listing = clients[Role.VIEWER].get(url).json()["results"]
    assert [row["id"] for row in listing] == [created["id"]]
    events = clients[Role.VIEWER].get(f"/api/v1/rollouts/{created['id']}/events/").json()
    assert events[0]["kind"] == "action"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model_version": 99999}, "model_version"),
        ({}, "model_version"),
        ({"config": {"max_batch_size": 0}}, "config"),
        ({"config": {"router_weights": [1, 1]}}, "config"),
        ({"config": {"max_batch_size": 8}, "steps": [50, 10, 100]}, "steps"),
        ({"config": {"max_batch_size": 8}, "steps": [10, 50]}, "steps"),
        ({"config": {"max_batch_size": 8}, "steps": [0, 100]}, "steps"),
        ({"config": {"max_batch_size": 8}, "steps": "10,100"}, "steps"),
        ({"config": {"max_batch_size": 8}, "strategy": "blue_green", "steps": [10, 100]}, "steps"),
        ({"config": {"max_batch_size": 8}, "strategy": "big_bang"}, "strategy"),
        ({"config": {"max_batch_size": 8}, "bake_s": -1}, "bake_s"),
        ({"config": {"max_batch_size": 8}, "gates": {"max_latency": 2}}, "gates"),
        ({"config": {"max_batch_size": 8}, "gates": {"enabled": ["vibes"]}}, "gates"),
        ({"config": {"max_batch_size": 8}, "gates": {"min_requests": -5}}, "gates"),
        ({"config": {"max_batch_size": 8}, "colour": "red"}, "colour"),
    ],
)
def test_bad_rollout_requests_get_400_and_create_nothing(clients, deployment, body, field):
    response = clients[Role.OPERATOR].post(f"/api/v1/deployments/{deployment.pk}/rollouts/", body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()
    assert not Rollout.objects.exists()


def test_a_canary_that_cannot_fit_beside_the_stable_version_is_refused_with_the_numbers(
    clients, actor, v2, model_version
):
    node = Node.objects.create(hostname="small", cpu_cores=2, memory_bytes=1000 * 2**20)
    deployment = create_deployment(actor, name="tight", model_version=model_version, node=node)
    response = clients[Role.OPERATOR].post(
        f"/api/v1/deployments/{deployment.pk}/rollouts/", {"model_version": v2.pk}, format="json"
    )
    assert response.status_code == 400
    message = response.json()["fit"][0]
    assert "The canary must run beside the stable version" in message and "usable" in message
    assert "rolling swap" in message


def test_blue_green_warms_up_without_traffic_then_switches_at_once(actor, deployment, v2):
    rollout = rollouts.create_rollout(actor, deployment, model_version=v2, strategy="blue_green", bake_s=10)
    start = timezone.now()
    ready(rollout)
    rollout = rollouts.advance(rollout, now=start, clients={})
    assert rollout.status == RolloutStatus.RUNNING and rollout.weight == 0
    rollout = rollouts.advance(rollout, now=start + timedelta(seconds=11), clients={})
    assert rollout.status == RolloutStatus.PROMOTED


def test_a_canary_that_never_becomes_healthy_fails_the_rollout(rollout, settings):
    later = rollout.created_at + timedelta(seconds=settings.WORKER_START_TIMEOUT_S + 1)
    rollout = rollouts.advance(rollout, now=later, clients={})
    assert rollout.status == RolloutStatus.FAILED and "did not become healthy" in rollout.reason


@pytest.mark.django_db(transaction=True)
def test_concurrent_promote_and_rollback_leave_exactly_one_outcome(actor, deployment, v2):
    rollout = rollouts.create_rollout(actor, deployment, model_version=v2, bake_s=0)
    ready(rollout)
    outcomes = []
    barrier = threading.Barrier(2)

    def act(change):
        barrier.wait()
        try:
            outcomes.append(change(audit.SYSTEM, Rollout.objects.get(pk=rollout.pk)).status)
        except Exception as exc:
            outcomes.append(type(exc).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=act, args=(fn,)) for fn in (rollouts.promote, rollouts.rollback)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) in (["Conflict", "promoted"], ["Conflict", "rolled_back"])
    deployment.refresh_from_db()
    final = Rollout.objects.get(pk=rollout.pk).status
    assert deployment.current_revision.number == (2 if final == "promoted" else 1)
    assert deployment.revisions.count() == (2 if final == "promoted" else 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_leave_one_active_rollout(operator, deployment, v2):
    outcomes = []
    barrier = threading.Barrier(4)

    def create(i):
        barrier.wait()
        try:
            rollouts.create_rollout(audit.Actor(operator), deployment, config={"max_batch_size": 8 + i})
            outcomes.append("created")
        except Exception as exc:
            outcomes.append(type(exc).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes.count("created") == 1 and outcomes.count("Conflict") == 3, outcomes
    assert Rollout.objects.filter(status__in=RolloutStatus.active()).count() == 1


def test_the_scheduled_job_moves_every_active_rollout_on(rollout, actor, model_version, cpu_node, v2):
    other = create_deployment(actor, name="other", model_version=model_version, node=cpu_node)
    second = rollouts.create_rollout(actor, other, model_version=v2, bake_s=60)
    ready(rollout)
    ready(second)
    result = rollouts.advance_all(now=timezone.now())
    assert result == {"active": 2, "moved": 2, "errors": {}}
    assert {r.status for r in Rollout.objects.all()} == {RolloutStatus.RUNNING}


def test_the_api_counts_the_requests_each_version_served(clients, rollout, deployment):
    start = timezone.now()
    records(deployment, "stable", 7, at=start)
    records(deployment, "canary", 3, at=start)
    body = clients[Role.VIEWER].get(f"/api/v1/rollouts/{rollout.pk}/").json()
    assert body["traffic"] == {"stable": 7, "canary": 3}
