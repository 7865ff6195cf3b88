"""A request that arrives while its deployment's worker restarts waits for the new worker instead of a 503."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from controlplane.gateway import routing
from controlplane.models import Deployment, InferenceRecord

from .conftest import assert_openai_error, auth

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "demo-cpu", "prompt": "Return the", "max_tokens": 4}


async def test_a_request_during_a_restart_is_served_by_the_next_worker(
    gateway, token, stub_worker, deployment, settings
):
    settings.GATEWAY_WORKER_WAIT_S = 60
    url = (await sync_to_async(Deployment.objects.get)(pk=deployment.pk)).worker_url
    await sync_to_async(Deployment.objects.filter(pk=deployment.pk).update)(worker_url="", status="starting")

    async def worker_comes_back() -> None:
        await asyncio.sleep(3 * routing.WAIT_POLL_S)
        await sync_to_async(Deployment.objects.filter(pk=deployment.pk).update)(worker_url=url, status="running")

    async with gateway:
        back = asyncio.create_task(worker_comes_back())
        response = await gateway.post("/v1/completions", headers=auth(token), json=BODY)
        await back
    assert response.status_code == 200, response.text
    assert await sync_to_async(list)(InferenceRecord.objects.values_list("status_code", flat=True)) == [200]


async def test_a_request_to_a_dead_worker_goes_to_its_replacement(gateway, token, stub_worker, deployment, settings):
    settings.GATEWAY_WORKER_WAIT_S = 60
    url = (await sync_to_async(Deployment.objects.get)(pk=deployment.pk)).worker_url
    await sync_to_async(Deployment.objects.filter(pk=deployment.pk).update)(worker_url="http://127.0.0.1:9")

    async def replaced() -> None:
        await asyncio.sleep(3 * routing.WAIT_POLL_S)
        await sync_to_async(Deployment.objects.filter(pk=deployment.pk).update)(worker_url=url)

    async with gateway:
        task = asyncio.create_task(replaced())
        response = await gateway.post("/v1/completions", headers=auth(token), json=BODY)
        await task
    assert response.status_code == 200, response.text


async def test_the_wait_ends_with_a_503_when_no_worker_comes(gateway, token, deployment, settings):
    settings.GATEWAY_WORKER_WAIT_S = 1
    async with gateway:
        response = await gateway.post("/v1/completions", headers=auth(token), json=BODY)
    assert_openai_error(response, 503, code="worker_unavailable")
