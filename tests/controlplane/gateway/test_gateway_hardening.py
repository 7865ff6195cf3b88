"""The gateway answers every input with 200 or an OpenAI-format error, never a 500: odd bodies, a lost Redis, limits
per user; and requests it refuses before a worker are recorded like the others."""

import json

import pytest
from asgiref.sync import sync_to_async

from controlplane.choices import TokenScope
from controlplane.gateway import cachecalls
from controlplane.models import ApiToken, InferenceRecord

from .conftest import BODIES, assert_openai_error, auth

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINTS = {
    "/v1/completions": {"model": "demo-cpu", "prompt": "hi"},
    "/v1/chat/completions": {"model": "demo-cpu", "messages": [{"role": "user", "content": "hi"}]},
}


def post_raw(gateway, path, token, raw: bytes):
    return gateway.post(path, headers={**auth(token), "Content-Type": "application/json"}, content=raw)


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("options", ["x", [1], 1, True])
async def test_stream_options_that_are_not_an_object_get_400_naming_it(gateway, token, stub_worker, path, options):
    async with gateway:
        body = {**ENDPOINTS[path], "stream": True, "stream_options": options}
        response = await gateway.post(path, headers=auth(token), json=body)
    assert_openai_error(response, 400, param="stream_options")
    assert stub_worker[BODIES] == []


async def test_a_non_boolean_include_usage_gets_400_naming_it(gateway, token, stub_worker):
    body = {**ENDPOINTS["/v1/completions"], "stream": True, "stream_options": {"include_usage": "yes"}}
    async with gateway:
        response = await gateway.post("/v1/completions", headers=auth(token), json=body)
    assert_openai_error(response, 400, param="stream_options.include_usage")


@pytest.mark.parametrize("depth", [40, 5_000, 100_000])
async def test_deeply_nested_json_gets_400(gateway, token, deployment, depth):
    async with gateway:
        for path in ENDPOINTS:
            raw = b'{"model": "demo-cpu", "prompt": ' + b"[" * depth + b"]" * depth + b"}"
            assert_openai_error(await post_raw(gateway, path, token, raw), 400)
            assert_openai_error(await post_raw(gateway, path, token, b"[" * depth), 400, code="invalid_json")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_lone_surrogate_gets_400_naming_the_field(gateway, token, stub_worker, stream):
    chat = b'{"model": "demo-cpu", "stream": %s, "messages": [{"role": "user", "content": "a\\ud800b"}]}'
    completion = b'{"model": "demo-cpu", "stream": %s, "prompt": ["ok", "\\udfff"]}'
    flag = b"true" if stream else b"false"
    async with gateway:
        response = await post_raw(gateway, "/v1/chat/completions", token, chat % flag)
        assert_openai_error(response, 400, param="messages[0].content")
        response = await post_raw(gateway, "/v1/completions", token, completion % flag)
        assert_openai_error(response, 400, param="prompt[1]")
        key = b'{"model": "demo-cpu", "prompt": "x", "\\ud800": 1}'
        assert_openai_error(await post_raw(gateway, "/v1/completions", token, key), 400)
        model = b'{"model": "demo-\\ud800", "prompt": "x"}'
        assert_openai_error(await post_raw(gateway, "/v1/completions", token, model), 400, param="model")
    assert stub_worker[BODIES] == []


async def test_valid_unicode_reaches_the_worker_intact(gateway, token, stub_worker):
    body = {"model": "demo-cpu", "stream": True, "messages": [{"role": "user", "content": "héllo 😀 \u2028"}]}
    async with gateway:
        response = await gateway.post("/v1/chat/completions", headers=auth(token), json=body)
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    assert stub_worker[BODIES][0]["messages"][0]["content"] == "héllo 😀 \u2028"


async def test_a_model_name_with_nul_gets_404_without_a_database_error(gateway, token, deployment):
    async with gateway:
        response = await gateway.post("/v1/completions", headers=auth(token), json={"model": "a\x00b"})
    assert_openai_error(response, 404, param="model")


@pytest.fixture
def redis_down(settings, unused_tcp_port):
    """Django's cache is Redis on a port where nothing listens."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{unused_tcp_port}/0",
        }
    }
    cachecalls.forget_outage()


async def test_with_redis_down_the_gateway_keeps_serving_without_the_response_cache(
    gateway, token, stub_worker, redis_down
):
    deterministic = {**ENDPOINTS["/v1/completions"], "temperature": 0}
    async with gateway:
        assert (await gateway.get("/v1/models", headers=auth(token))).status_code == 200
        for _ in range(3):
            response = await gateway.post("/v1/completions", headers=auth(token), json=deterministic)
            assert response.status_code == 200, response.text
        streamed = {**ENDPOINTS["/v1/chat/completions"], "stream": True, "session_id": "s-1"}
        response = await gateway.post("/v1/chat/completions", headers=auth(token), json=streamed)
        assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    assert len(stub_worker[BODIES]) == 4  # no cache hits: every request reached the worker


async def test_with_redis_down_rate_limits_are_still_enforced_per_process(gateway, viewer, stub_worker, redis_down):
    _, raw = await sync_to_async(ApiToken.issue)(viewer, "slow", rate_limit_per_minute=2)
    async with gateway:
        statuses = [
            (await gateway.post("/v1/completions", headers=auth(raw), json=ENDPOINTS["/v1/completions"])).status_code
            for _ in range(3)
        ]
    assert statuses == [200, 200, 429]


async def test_a_users_limit_covers_all_of_their_tokens(gateway, viewer, stub_worker):
    viewer.rate_limit_per_minute = 2
    await sync_to_async(viewer.save)(update_fields=["rate_limit_per_minute"])
    raws = [(await sync_to_async(ApiToken.issue)(viewer, f"t{i}", scope=TokenScope.INFERENCE))[1] for i in range(3)]
    async with gateway:
        statuses = [
            (await gateway.post("/v1/completions", headers=auth(raw), json=ENDPOINTS["/v1/completions"])).status_code
            for raw in raws
        ]
        response = await gateway.post("/v1/completions", headers=auth(raws[0]), json=ENDPOINTS["/v1/completions"])
    assert statuses == [200, 200, 429]
    error = assert_openai_error(response, 429, code="rate_limit_exceeded")
    assert "user" in error["message"]


async def test_requests_refused_before_a_worker_are_recorded_with_their_status(gateway, viewer, token, deployment):
    _, limited = await sync_to_async(ApiToken.issue)(viewer, "slow", rate_limit_per_minute=1)
    body = ENDPOINTS["/v1/completions"]
    async with gateway:
        assert_openai_error(await gateway.post("/v1/completions", headers=auth(token), json=body), 503)
        assert_openai_error(await gateway.post("/v1/completions", headers=auth(limited), json=body), 503)
        # the limit counts every request, also those no worker could take (it is checked before waiting for one)
        assert_openai_error(await gateway.post("/v1/completions", headers=auth(limited), json=body), 429)
        # not recorded: no token (nobody to bill), a bad body or an unknown model (no deployment to record against)
        assert_openai_error(await gateway.post("/v1/completions", headers=auth("lcp_nope"), json=body), 401)
        assert_openai_error(await post_raw(gateway, "/v1/completions", token, b"{"), 400)
        assert_openai_error(await gateway.post("/v1/completions", headers=auth(token), json={"model": "x"}), 404)
    records = await sync_to_async(list)(InferenceRecord.objects.order_by("id").values("status_code", "token_id"))
    assert [r["status_code"] for r in records] == [503, 503, 429]


async def test_a_rate_limited_request_is_recorded_as_429(gateway, viewer, stub_worker):
    token, raw = await sync_to_async(ApiToken.issue)(viewer, "slow", rate_limit_per_minute=1)
    async with gateway:
        for _ in range(2):
            await gateway.post("/v1/completions", headers=auth(raw), json=ENDPOINTS["/v1/completions"])
    records = await sync_to_async(list)(InferenceRecord.objects.order_by("id"))
    assert [(r.status_code, r.token_id) for r in records] == [(200, token.pk), (429, token.pk)]
    assert "Rate limit" in records[1].error


@pytest.mark.parametrize("path", ["/v1", "/v1/", "/v1/engines/x/completions", "/v1/models/a/b"])
async def test_every_unmatched_v1_path_answers_json_not_html(gateway, token, path):
    async with gateway:
        for method in ("GET", "POST"):
            response = await gateway.request(method, path, headers=auth(token))
            assert response.status_code in (404, 405) and response.headers["content-type"] == "application/json"
            assert_openai_error(response, response.status_code)
            response = await gateway.request(method, path)
            assert response.headers["content-type"] == "application/json", path
            json.loads(response.text)
