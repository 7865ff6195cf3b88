"""The rollout pages: start one from the deployment, follow it, and act on it, through the same services."""

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.choices import RolloutStatus
from controlplane.models import InferenceRecord, Rollout
from controlplane.rollouts import machine as rollouts
from controlplane.services import registry

from ..conftest import make_checkpoint

pytestmark = pytest.mark.django_db

# The windows these tests build hold 20 canary requests (and 180 stable): the gates judge from that many.
SMALL_WINDOWS = {"min_requests": 20}


@pytest.fixture
def v2(actor, model_dir):
    return registry.register_model_version(
        actor, name="demo", version="v2", artifact_path=str(make_checkpoint(model_dir / "v2", seed=2))
    )


def test_an_operator_starts_a_canary_from_the_deployment_page(client, operator, deployment, v2):
    client.force_login(operator)
    assert "Start a rollout" in client.get(f"/deployments/{deployment.pk}/").content.decode()
    response = client.post(
        f"/deployments/{deployment.pk}/rollouts/new/",
        {"model_version": v2.pk, "strategy": "canary", "steps": "20, 100", "bake_s": "60"},
    )
    assert response.status_code == 302
    rollout = Rollout.objects.get()
    assert rollout.steps == [20, 100] and rollout.target_model_version == v2
    page = client.get(response["Location"]).content.decode()
    assert "Waiting" in page or "pending" in page.lower()
    assert f"/rollouts/{rollout.pk}/" in client.get(f"/deployments/{deployment.pk}/").content.decode()


def test_a_bad_rollout_form_shows_the_problem_and_starts_nothing(client, operator, deployment):
    client.force_login(operator)
    response = client.post(
        f"/deployments/{deployment.pk}/rollouts/new/",
        {"strategy": "canary", "router_weights": "1, 1", "steps": "10, 100", "bake_s": "60"},
    )
    assert response.status_code == 400
    assert "needs one weight per expert" in response.content.decode()
    assert not Rollout.objects.exists()


def test_viewers_see_rollouts_but_cannot_start_or_act_on_them(client, viewer, actor, deployment, v2):
    rollout = rollouts.create_rollout(actor, deployment, model_version=v2)
    client.force_login(viewer)
    assert client.get(f"/rollouts/{rollout.pk}/").status_code == 200
    assert client.get(f"/deployments/{deployment.pk}/rollouts/new/").status_code == 403
    assert client.post(f"/rollouts/{rollout.pk}/promote/").status_code == 403


def test_the_page_charts_each_gate_and_shows_the_decision(client, operator, actor, deployment, v2):
    rollout = rollouts.create_rollout(actor, deployment, model_version=v2, gates=SMALL_WINDOWS, bake_s=10)
    start = timezone.now()
    rollouts.canary_ready(rollout, "http://127.0.0.1:9", 1)
    rollouts.advance(rollout, now=start, clients={})
    for variant, status in (("stable", 200), ("canary", 500)):
        InferenceRecord.objects.bulk_create(
            [
                InferenceRecord(
                    at=start + timedelta(seconds=1),
                    deployment=deployment,
                    variant=variant,
                    endpoint="completions",
                    status_code=status,
                    latency_s=0.1,
                    completion_tokens=10,
                )
                for _ in range(25)
            ]
        )
    rollouts.advance(rollout, now=start + timedelta(seconds=11), clients={})
    client.force_login(operator)
    page = client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert 'id="gate-error_rate"' in page and "gate error_rate failed at step 1" in page
    assert "Rolled back" in page


def test_an_illegal_action_is_shown_as_a_message(client, operator, actor, deployment, v2):
    rollout = rollouts.create_rollout(actor, deployment, model_version=v2)
    rollouts.abort(actor, rollout)
    client.force_login(operator)
    response = client.post(f"/rollouts/{rollout.pk}/promote/", follow=True)
    assert "cannot promote rollout" in response.content.decode()
    assert Rollout.objects.get().status == RolloutStatus.ABORTED
