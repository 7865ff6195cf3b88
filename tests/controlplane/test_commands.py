"""Management commands: the first admin, and API tokens from the command line."""

import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from controlplane.models import ApiToken, User

pytestmark = pytest.mark.django_db


def run(*args, **env) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_ensure_admin_generates_a_password_once(monkeypatch):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    output = run("ensure_admin")
    password = output.strip().splitlines()[-1].rsplit(" ", 1)[-1]
    admin = User.objects.get(username="admin")
    assert admin.check_password(password) and admin.effective_role == "admin"
    assert "nothing to do" in run("ensure_admin")
    assert User.objects.count() == 1


def test_ensure_admin_takes_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("ADMIN_PASSWORD", "chosen-by-me-123")
    output = run("ensure_admin")
    assert "chosen-by-me-123" not in output
    assert User.objects.get(username="admin").check_password("chosen-by-me-123")


def test_create_api_token_prints_the_token_alone_on_the_last_line(operator):
    output = run("create_api_token", "operator", "--name", "release-bot")
    raw = output.strip().splitlines()[-1]
    token = ApiToken.lookup(raw)
    assert token.user == operator and token.name == "release-bot"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/me/").json()["username"] == "operator"


def test_create_api_token_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        run("create_api_token", "ghost")
