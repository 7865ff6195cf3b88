"""The same pages and API through the ASGI handler (as uvicorn serves them), where middleware runs async."""

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from controlplane.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("path", ["/", "/models/", "/nodes/", "/deployments/", "/audit/", "/tokens/"])
async def test_pages_render_for_a_signed_in_user_over_asgi(viewer, path):
    client = AsyncClient()
    await client.aforce_login(viewer)
    response = await client.get(path)
    assert response.status_code == 200


async def test_anonymous_pages_redirect_to_login_over_asgi():
    response = await AsyncClient().get("/deployments/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


async def test_the_api_answers_over_asgi(viewer):
    _, raw = await sync_to_async(ApiToken.issue)(viewer, "asgi")
    response = await AsyncClient().get("/api/v1/me/", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200 and response.json()["username"] == "viewer"
    assert (await AsyncClient().get("/api/v1/me/")).status_code == 401
