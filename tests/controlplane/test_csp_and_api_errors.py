"""The dashboard's Content-Security-Policy, templates that keep to it, and JSON errors for any path under /api/."""

import re
from pathlib import Path

import pytest

from controlplane.choices import Role

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_dashboard_pages_carry_a_content_security_policy_without_inline_scripts(as_viewer):
    response = as_viewer.get("/")
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "ws://testserver" in directives["connect-src"]


def test_the_login_page_and_api_answers_carry_it_too(client, clients):
    assert "script-src 'self';" in client.get("/accounts/login/")["Content-Security-Policy"]
    assert "Content-Security-Policy" in clients[Role.VIEWER].get("/api/v1/nodes/")


@pytest.mark.parametrize("path", sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.html")))
def test_no_template_has_an_inline_script_or_event_handler(path):
    if path.startswith("alerts/email/"):
        return  # e-mails: no scripts at all, inline styles are how e-mail is styled
    html = (TEMPLATES / path).read_text()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
    assert not re.search(r"\son[a-z]+\s*=", html), path
    assert "javascript:" not in html and "<style" not in html and 'style="' not in html, path


@pytest.mark.parametrize("path", ["/api/v1/gpus/2.5e-3/", "/api/v1/nothing/", "/api/nothing"])
def test_a_path_under_the_api_that_no_route_matches_is_a_404_in_json(clients, path):
    response = clients[Role.VIEWER].get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "not_found"


def test_a_format_filter_on_model_versions_filters_rather_than_picking_a_renderer(clients):
    response = clients[Role.VIEWER].get("/api/v1/model-versions/?format=hf")
    assert response.status_code == 200
    assert response.json()["count"] == 0
