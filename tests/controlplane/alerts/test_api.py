"""/api/v1/alert-rules/ (CRUD contract and bad input), /api/v1/alerts/ (read, acknowledge, resolve) and
/api/v1/notifications/ (read with attempts, retry)."""

from __future__ import annotations

import pytest

from controlplane.alerts.delivery import deliver_pending_notifications
from controlplane.alerts.rules import create_rule
from controlplane.alerts.service import signal
from controlplane.choices import AlertKind, AlertState, NotificationStatus, Role
from controlplane.models import Alert, AlertRule, AuditEvent, Notification

from ..api_contract import DROP, CrudContract


class TestAlertRulesAPI(CrudContract):
    url = "/api/v1/alert-rules/"
    model = AlertRule
    bad_cases = {
        "missing name": ({"name": DROP}, "name"),
        "name with spaces": ({"name": "slow demo"}, "name"),
        "duplicate name": ({"name": "slow"}, "name"),
        "missing kind": ({"kind": DROP}, "kind"),
        "unknown kind": ({"kind": "weather"}, "kind"),
        "missing threshold": ({"parameters": {"window_s": 60}}, "parameters"),
        "negative window": ({"parameters": {"threshold_s": 1.0, "window_s": -5}}, "parameters"),
        "zero threshold": ({"parameters": {"threshold_s": 0}}, "parameters"),
        "threshold of the wrong type": ({"parameters": {"threshold_s": "fast"}}, "parameters"),
        "unknown parameter": ({"parameters": {"threshold_s": 1.0, "colour": "red"}}, "parameters"),
        "parameter of another kind": ({"parameters": {"threshold_s": 1.0, "min_count": 2}}, "parameters"),
        "unknown metric": ({"parameters": {"threshold_s": 1.0, "metric": "tokens"}}, "parameters"),
        "parameters that are not an object": ({"parameters": [1, 2]}, "parameters"),
        "bad e-mail address": ({"recipients": ["oncall@example.org", "not-an-address"]}, "recipients"),
        "recipients that are not a list": ({"recipients": "oncall@example.org"}, "recipients"),
        "negative for_s": ({"for_s": -1}, "for_s"),
        "for_s beyond a week": ({"for_s": 10**7}, "for_s"),
        "repeat interval too short": ({"repeat_interval_s": 5}, "repeat_interval_s"),
        "unknown severity": ({"severity": "apocalyptic"}, "severity"),
        "deployment that does not exist": ({"deployment": 9999}, "deployment"),
        "unknown key": ({"colour": "red"}, "colour"),
    }

    @pytest.fixture
    def instance(self, actor, deployment):
        return create_rule(
            actor, name="slow", kind=AlertKind.LATENCY, deployment=deployment, parameters={"threshold_s": 1.5}
        )

    @pytest.fixture
    def create_payload(self, deployment):
        return {
            "name": "slow-demo",
            "kind": "latency",
            "deployment": deployment.pk,
            "parameters": {"threshold_s": 2.0, "window_s": 120},
            "severity": "critical",
            "for_s": 60,
            "recipients": ["ml-oncall@example.org"],
        }

    @pytest.fixture
    def update_payload(self):
        return {"parameters": {"threshold_s": 3.0, "window_s": 600}, "enabled": False, "for_s": 0}


@pytest.mark.django_db
def test_a_created_rule_has_its_defaults_filled_in(clients, deployment):
    payload = {"name": "errors", "kind": "error_rate", "parameters": {"threshold": 0.05}}
    body = clients[Role.OPERATOR].post("/api/v1/alert-rules/", payload, format="json").json()
    assert body["parameters"] == {"threshold": 0.05, "window_s": 300, "min_requests": 20}
    assert body["deployment"] is None and body["recipients"] == [] and body["severity"] == "warning"
    assert body["created_by"] == "operator" and body["repeat_interval_s"] == 14400


@pytest.mark.django_db
def test_bad_parameters_are_named_one_by_one(clients):
    payload = {"name": "x", "kind": "latency", "parameters": {"window_s": -5, "colour": "red"}}
    response = clients[Role.OPERATOR].post("/api/v1/alert-rules/", payload, format="json")
    assert response.status_code == 400
    errors = response.json()["parameters"]
    assert set(errors) == {"threshold_s", "window_s", "colour"}
    assert errors["threshold_s"] == ["is required"] and "at least 10" in errors["window_s"][0]


@pytest.mark.django_db
def test_the_kind_of_a_rule_cannot_change(clients, actor):
    rule = create_rule(actor, name="leaks", kind=AlertKind.LEAK)
    response = clients[Role.OPERATOR].patch(f"/api/v1/alert-rules/{rule.pk}/", {"kind": "drift"}, format="json")
    assert response.status_code == 200
    assert AlertRule.objects.get(pk=rule.pk).kind == AlertKind.LEAK


@pytest.fixture
def firing(deployment, settings):
    settings.ONCALL_EMAILS = ["oncall@example.org"]
    signal(AlertKind.DRIFT, deployment, "quality", True, "quality drift", values={"statistic": 0.4})
    return Alert.objects.get()


@pytest.mark.django_db
def test_viewers_read_alerts_with_their_figures_and_cause(clients, firing):
    body = clients[Role.VIEWER].get("/api/v1/alerts/?state=firing").json()
    assert [row["id"] for row in body["results"]] == [firing.pk]
    detail = clients[Role.VIEWER].get(f"/api/v1/alerts/{firing.pk}/").json()
    assert detail["values"] == {"statistic": 0.4} and detail["cause"]["revision"] == 1
    assert detail["deployment_name"] == "demo-cpu" and detail["rule_name"] == "default-drift"


@pytest.mark.django_db
def test_operators_acknowledge_then_resolve_and_illegal_moves_are_409(clients, firing):
    url = f"/api/v1/alerts/{firing.pk}/"
    assert clients[Role.VIEWER].post(url + "acknowledge/", {}, format="json").status_code == 403
    response = clients[Role.OPERATOR].post(url + "acknowledge/", {"comment": "on it"}, format="json")
    assert response.status_code == 200 and response.json()["state"] == AlertState.ACKNOWLEDGED
    assert response.json()["acknowledged_by"] == "operator"
    assert clients[Role.OPERATOR].post(url + "acknowledge/", {}, format="json").status_code == 409
    response = clients[Role.OPERATOR].post(url + "resolve/", {"comment": "rolled back"}, format="json")
    assert response.status_code == 200 and response.json()["resolution"] == "resolved by operator: rolled back"
    conflict = clients[Role.OPERATOR].post(url + "acknowledge/", {}, format="json")
    assert conflict.status_code == 409 and "resolved" in conflict.json()["detail"]
    assert clients[Role.OPERATOR].post(url + "resolve/", {}, format="json").status_code == 409
    actions = list(AuditEvent.objects.filter(object_type="alert").order_by("id").values_list("action", "source"))
    assert actions == [("alert.fire", "system"), ("alert.acknowledge", "api"), ("alert.resolve", "api")]


@pytest.mark.django_db
def test_an_action_with_an_unknown_key_is_400(clients, firing):
    response = clients[Role.OPERATOR].post(f"/api/v1/alerts/{firing.pk}/acknowledge/", {"note": "x"}, format="json")
    assert response.status_code == 400 and "note" in response.json()
    assert Alert.objects.get().state == AlertState.FIRING


@pytest.mark.django_db
def test_alerts_cannot_be_written_directly(clients, firing):
    assert clients[Role.ADMIN].patch(f"/api/v1/alerts/{firing.pk}/", {"state": "resolved"}).status_code == 405
    assert clients[Role.ADMIN].delete(f"/api/v1/alerts/{firing.pk}/").status_code == 405


@pytest.mark.django_db
def test_notifications_show_their_attempts_and_a_failed_one_can_be_retried(clients, firing, no_smtp_server):
    deliver_pending_notifications()
    body = clients[Role.VIEWER].get(f"/api/v1/notifications/?alert={firing.pk}").json()
    [row] = body["results"]
    assert row["status"] == NotificationStatus.PENDING and row["recipients"] == ["oncall@example.org"]
    assert row["attempts"][0]["outcome"] == "temporary_failure" and "refused" in row["attempts"][0]["error"]
    url = f"/api/v1/notifications/{row['id']}/retry/"
    assert clients[Role.OPERATOR].post(url).status_code == 409  # not failed (yet): it is still being retried
    Notification.objects.update(status=NotificationStatus.FAILED)
    assert clients[Role.VIEWER].post(url).status_code == 403
    response = clients[Role.OPERATOR].post(url)
    assert response.status_code == 200 and response.json()["status"] == NotificationStatus.PENDING
