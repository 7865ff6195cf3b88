"""Authentication and roles: hashed tokens, scopes, expiry, lockout, and login on every page."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.choices import Role, TokenScope
from controlplane.models import ApiToken, User

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_a_new_token_is_shown_once_and_only_its_hash_is_stored(clients, viewer):
    response = clients[Role.VIEWER].post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert response.status_code == 201
    raw = response.json()["token"]
    assert raw.startswith("lcp_") and len(raw) > 40
    token = ApiToken.objects.get(pk=response.json()["id"])
    assert token.token_hash != raw and raw not in token.token_hash
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM controlplane_apitoken")
        assert all(raw not in str(row) for row in cursor.fetchall())
    listing = clients[Role.VIEWER].get("/api/v1/tokens/").json()["results"]
    assert all("token" not in row for row in listing)
    assert bearer(raw).get("/api/v1/me/").json()["username"] == "viewer"


def test_revoked_expired_and_inactive_users_tokens_get_401(viewer):
    token, raw = ApiToken.issue(viewer, "t")
    assert bearer(raw).get("/api/v1/nodes/").status_code == 200
    token.revoked_at = timezone.now()
    token.save()
    assert bearer(raw).get("/api/v1/nodes/").status_code == 401
    _, raw2 = ApiToken.issue(viewer, "t2", expires_at=timezone.now() - timedelta(seconds=1))
    assert bearer(raw2).get("/api/v1/nodes/").status_code == 401
    _, raw3 = ApiToken.issue(viewer, "t3")
    User.objects.filter(pk=viewer.pk).update(is_active=False)
    assert bearer(raw3).get("/api/v1/nodes/").status_code == 401


def test_a_malformed_authorization_header_gets_401_with_a_bearer_challenge():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token abc")
    response = client.get("/api/v1/nodes/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_inference_only_token_cannot_use_the_rest_api(viewer):
    _, raw = ApiToken.issue(viewer, "gateway", scope=TokenScope.INFERENCE)
    response = bearer(raw).get("/api/v1/nodes/")
    assert response.status_code == 403
    assert "inference" in response.json()["detail"]


def test_revoking_is_by_delete_and_only_your_own_unless_admin(clients, viewer, operator):
    own = clients[Role.VIEWER].post("/api/v1/tokens/", {"name": "mine"}, format="json").json()
    assert clients[Role.OPERATOR].delete(f"/api/v1/tokens/{own['id']}/").status_code == 404
    assert clients[Role.VIEWER].delete(f"/api/v1/tokens/{own['id']}/").status_code == 204
    assert ApiToken.objects.get(pk=own["id"]).revoked_at is not None
    assert bearer(own["token"]).get("/api/v1/me/").status_code == 401
    other = clients[Role.OPERATOR].post("/api/v1/tokens/", {"name": "op"}, format="json").json()
    assert clients[Role.ADMIN].delete(f"/api/v1/tokens/{other['id']}/").status_code == 204


def test_only_admins_create_tokens_for_others(clients, operator):
    response = clients[Role.VIEWER].post("/api/v1/tokens/", {"name": "x", "user": "operator"}, format="json")
    assert response.status_code == 403
    response = clients[Role.ADMIN].post("/api/v1/tokens/", {"name": "x", "user": "operator"}, format="json")
    assert response.status_code == 201 and response.json()["user"] == "operator"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scope": "everything"}, "scope"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "rate_limit_per_minute": 0}, "rate_limit_per_minute"),
        ({}, "name"),
    ],
)
def test_bad_token_requests_get_400(clients, body, field):
    response = clients[Role.VIEWER].post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 400 and field in response.json()


def test_only_admins_manage_users(clients):
    assert clients[Role.OPERATOR].get("/api/v1/users/").status_code == 403
    response = clients[Role.ADMIN].post(
        "/api/v1/users/", {"username": "new-op", "password": "a-long-pass-phrase-9", "role": "operator"}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert "password" not in response.json()
    weak = clients[Role.ADMIN].post("/api/v1/users/", {"username": "weak", "password": "123"}, format="json")
    assert weak.status_code == 400 and "password" in weak.json()
    promoted = clients[Role.ADMIN].patch(f"/api/v1/users/{response.json()['id']}/", {"role": "admin"}, format="json")
    assert promoted.json()["effective_role"] == "admin"


def test_superusers_act_as_admins(db):
    root = User.objects.create_superuser("root", password=PASSWORD)
    assert root.effective_role == Role.ADMIN and root.has_role(Role.ADMIN)


def test_repeated_failed_logins_lock_the_account(client, viewer, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post("/accounts/login/", {"username": "viewer", "password": "wrong"})
    assert response.status_code in (403, 429)
    assert b"Too many failed sign-ins" in response.content
    # even the right password is refused while locked
    response = client.post("/accounts/login/", {"username": "viewer", "password": PASSWORD})
    assert response.status_code in (403, 429)
    assert "_auth_user_id" not in client.session


def test_a_correct_login_reaches_the_overview(client, viewer):
    response = client.post("/accounts/login/", {"username": "viewer", "password": PASSWORD}, follow=True)
    assert response.status_code == 200
    assert b"Overview" in response.content


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/models/",
        "/nodes/",
        "/deployments/",
        "/audit/",
        "/tokens/",
        "/users/",
        "/deployments/new/",
        "/models/1/",
        "/admin/",
    ],
)
def test_every_page_needs_a_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/login/" in response["Location"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/accounts/login/"])
def test_health_checks_and_the_login_page_are_public(client, path):
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/nodes/", "/api/v1/audit-events/", "/api/schema/", "/api/docs/"])
def test_the_api_and_its_reference_need_authentication(client, path):
    assert client.get(path).status_code == 401


def test_the_dashboard_session_works_for_the_api_but_unsafe_calls_need_csrf(viewer, operator):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.get("/api/v1/me/").json()["role"] == "operator"
    response = client.post("/api/v1/nodes/", {"hostname": "x", "cpu_cores": 1, "memory_bytes": 1}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


def test_a_token_may_not_have_a_higher_rate_limit_than_its_user(clients, viewer):
    viewer.rate_limit_per_minute = 10
    viewer.save(update_fields=["rate_limit_per_minute"])
    over = clients[Role.VIEWER].post("/api/v1/tokens/", {"name": "x", "rate_limit_per_minute": 11}, format="json")
    assert over.status_code == 400 and "rate_limit_per_minute" in over.json(), over.json()
    assert (
        clients[Role.VIEWER].post("/api/v1/tokens/", {"name": "same", "rate_limit_per_minute": 10}).status_code == 201
    )
    assert clients[Role.VIEWER].post("/api/v1/tokens/", {"name": "inherits"}, format="json").status_code == 201


def test_only_admins_set_a_users_rate_limit(clients, viewer):
    own = clients[Role.VIEWER].patch(f"/api/v1/users/{viewer.pk}/", {"rate_limit_per_minute": None}, format="json")
    assert own.status_code == 403
    response = clients[Role.ADMIN].patch(f"/api/v1/users/{viewer.pk}/", {"rate_limit_per_minute": 5}, format="json")
    assert response.status_code == 200 and response.json()["rate_limit_per_minute"] == 5
    bad = clients[Role.ADMIN].patch(f"/api/v1/users/{viewer.pk}/", {"rate_limit_per_minute": 0}, format="json")
    assert bad.status_code == 400 and "rate_limit_per_minute" in bad.json()
