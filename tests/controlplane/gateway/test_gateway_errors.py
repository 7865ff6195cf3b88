"""The /v1 gateway through the real ASGI app: authentication, bad input and unavailable workers, all answered in
OpenAI's error format. (Answers from a real worker are tested end to end in tests/e2e.)"""

import pytest
from asgiref.sync import sync_to_async

from controlplane.models import ApiToken, Deployment, InferenceRecord

from .conftest import assert_openai_error, auth

pytestmark = pytest.mark.django_db(transaction=True)


async def test_calls_without_a_valid_token_get_401(gateway, viewer):
    async with gateway:
        assert_openai_error(await gateway.get("/v1/models"), 401, code="missing_api_key")
        response = await gateway.post("/v1/completions", headers=auth("lcp_nope"), json={"model": "demo"})
        assert_openai_error(response, 401, code="invalid_api_key")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_an_inference_only_token_lists_the_running_deployments(gateway, token, deployment):
    async with gateway:
        response = await gateway.get("/v1/models", headers=auth(token))
        assert response.status_code == 200
        assert [m["id"] for m in response.json()["data"]] == ["demo-cpu"]
        assert (await gateway.get("/v1/models/demo-cpu", headers=auth(token))).json()["id"] == "demo-cpu"
        assert_openai_error(await gateway.get("/v1/models/other", headers=auth(token)), 404, param="model")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"[1, 2]", None, "invalid_json"),
        (b'{"prompt": "x"}', "model", None),
        (b'{"model": 5}', "model", None),
        (b'{"model": "demo-cpu", "stream": "yes"}', "stream", None),
        (b'{"model": "demo-cpu", "session_id": "has spaces!"}', "session_id", None),
    ],
)
async def test_bad_bodies_get_400_naming_the_problem(gateway, token, deployment, body, param, code):
    async with gateway:
        response = await gateway.post(
            "/v1/completions", headers={**auth(token), "Content-Type": "application/json"}, content=body
        )
    assert_openai_error(response, 400, param=param, code=code)


async def test_an_unknown_model_gets_404(gateway, token, deployment):
    async with gateway:
        response = await gateway.post("/v1/chat/completions", headers=auth(token), json={"model": "gpt-4"})
    assert_openai_error(response, 404, param="model", code="model_not_found")


async def test_an_oversized_body_gets_413_before_it_is_read(gateway, token, deployment, settings):
    async with gateway:
        big = {"model": "demo-cpu", "prompt": "x" * (settings.MAX_REQUEST_BYTES + 1)}
        assert_openai_error(await gateway.post("/v1/completions", headers=auth(token), json=big), 413)


async def test_the_wrong_method_or_path_gets_an_openai_error(gateway, token):
    async with gateway:
        assert_openai_error(await gateway.get("/v1/completions", headers=auth(token)), 405)
        assert_openai_error(await gateway.post("/v1/embeddings", headers=auth(token), json={}), 404)


async def test_a_deployment_without_a_worker_gets_503_with_retry_after(gateway, token, deployment):
    async with gateway:
        response = await gateway.post("/v1/completions", headers=auth(token), json={"model": "demo-cpu"})
    error = assert_openai_error(response, 503, code="worker_unavailable")
    assert int(response.headers["Retry-After"]) >= 1
    assert "pending" not in error["message"]  # the deployment's state is for operators: it goes to the record
    record = await sync_to_async(InferenceRecord.objects.get)()
    assert record.status_code == 503 and record.deployment_id == deployment.pk and "pending" in record.error


async def test_a_worker_that_does_not_answer_gets_503_and_the_request_is_recorded(gateway, token, deployment):
    await sync_to_async(Deployment.objects.filter(pk=deployment.pk).update)(worker_url="http://127.0.0.1:9")
    async with gateway:
        response = await gateway.post("/v1/completions", headers=auth(token), json={"model": "demo-cpu", "prompt": "x"})
    assert_openai_error(response, 503, code="worker_unavailable")
    record = await sync_to_async(InferenceRecord.objects.get)()
    assert record.status_code == 503 and record.deployment_id == deployment.pk and "cannot be reached" in record.error


async def test_a_rate_limited_token_gets_429_with_retry_after(gateway, viewer, deployment):
    _, raw = await sync_to_async(ApiToken.issue)(viewer, "slow", rate_limit_per_minute=2)
    await sync_to_async(Deployment.objects.filter(pk=deployment.pk).update)(worker_url="http://127.0.0.1:9")
    async with gateway:
        statuses = []
        for _ in range(3):
            response = await gateway.post("/v1/completions", headers=auth(raw), json={"model": "demo-cpu"})
            statuses.append(response.status_code)
    assert statuses == [503, 503, 429]
    assert_openai_error(response, 429, code="rate_limit_exceeded")
    assert 1 <= int(response.headers["Retry-After"]) <= 60


async def test_a_newly_served_revision_is_seen_on_the_next_request_despite_the_route_cache(token, deployment, settings):
    from controlplane.gateway.routing import resolve
    from controlplane.services.serving import publish_served_revision

    settings.GATEWAY_ROUTE_CACHE_S = 60
    await sync_to_async(Deployment.objects.filter(pk=deployment.pk).update)(
        worker_url="http://127.0.0.1:9", applied_revision=1
    )
    assert (await resolve("demo-cpu")).revision == 1
    await sync_to_async(Deployment.objects.filter(pk=deployment.pk).update)(applied_revision=2)
    assert (await resolve("demo-cpu")).revision == 1  # cached, and nothing said the revision changed
    await sync_to_async(publish_served_revision)(deployment.pk, 2)
    assert (await resolve("demo-cpu")).revision == 2
