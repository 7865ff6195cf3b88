"""Alert pages: lists with open alerts first, the detail with chart, cause and attempts, the buttons, the rule
forms, and the banner every page shows while something fires or an e-mail failed for good."""

from __future__ import annotations

import pytest

from controlplane.alerts.delivery import deliver_pending_notifications
from controlplane.alerts.rules import create_rule
from controlplane.alerts.service import acknowledge_alert, resolve_alert, signal
from controlplane.choices import AlertKind, AlertState, NotificationStatus
from controlplane.models import Alert, AlertRule, AuditEvent, Notification

from ..conftest import page_text as text

pytestmark = pytest.mark.django_db


def fire(deployment, key, clock, **kwargs):
    signal(
        AlertKind.DRIFT,
        deployment,
        key,
        True,
        f"{key} drift on {deployment.name}",
        "the statistic crossed its threshold",
        {"statistic": 0.4, "threshold": 0.2},
        [((clock.now).isoformat(), 0.1), (clock.advance(60).isoformat(), 0.4)],
        threshold=0.2,
        series_label="statistic",
        now=clock.now,
        **kwargs,
    )
    return Alert.objects.get(key=key, state__in=["firing", "acknowledged"])


def test_the_list_shows_firing_alerts_before_acknowledged_ones_and_keeps_the_history(
    as_viewer, deployment, clock, actor
):
    acknowledged = fire(deployment, "latency", clock)
    acknowledge_alert(actor, acknowledged)
    resolved = fire(deployment, "distribution", clock)
    resolve_alert(actor, resolved)
    fire(deployment, "quality", clock)
    page = text(as_viewer.get("/alerts/"))
    open_part, history = page.split("<h3>Resolved</h3>")
    assert open_part.index("quality drift") < open_part.index("latency drift")
    assert "distribution drift" in history and "distribution drift" not in open_part
    assert "badge badge-firing" in open_part and "badge badge-acknowledged" in open_part


def test_the_detail_shows_figures_chart_cause_and_attempts(as_viewer, deployment, clock, no_smtp_server):
    alert = fire(deployment, "quality", clock)
    deliver_pending_notifications(clock.now)
    page = text(as_viewer.get(f"/alerts/{alert.pk}/"))
    assert "quality drift on demo-cpu" in page and "<code>0.4</code>" in page
    assert f'src="/alerts/{alert.pk}/chart.png"' in page
    assert "Revision <strong>1</strong>" in page and "demo:v1" in page
    assert "Temporary failure" in page and "connection refused" in page
    assert 'data-action="acknowledge"' not in page  # viewers get no buttons
    chart = as_viewer.get(f"/alerts/{alert.pk}/chart.png")
    assert chart.status_code == 200 and chart["Content-Type"] == "image/png"
    assert chart.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_alert_without_a_series_has_no_chart(as_viewer, clock):
    signal(AlertKind.JOB_FAILURE, None, "cleanup", True, now=clock.now)
    alert = Alert.objects.get()
    assert "chart.png" not in text(as_viewer.get(f"/alerts/{alert.pk}/"))
    assert as_viewer.get(f"/alerts/{alert.pk}/chart.png").status_code == 404


def test_operators_acknowledge_and_resolve_with_the_buttons(as_operator, deployment, clock):
    alert = fire(deployment, "quality", clock)
    page = text(as_operator.get(f"/alerts/{alert.pk}/"))
    assert 'data-action="acknowledge"' in page and 'data-action="resolve"' in page
    assert as_operator.post(f"/alerts/{alert.pk}/acknowledge/").status_code == 302
    assert Alert.objects.get().state == AlertState.ACKNOWLEDGED
    response = as_operator.post(f"/alerts/{alert.pk}/acknowledge/", follow=True)
    assert "only a firing alert can be acknowledged" in text(response)
    as_operator.post(f"/alerts/{alert.pk}/resolve/", {"comment": "rolled back"})
    assert Alert.objects.get().resolution == "resolved by operator: rolled back"
    assert AuditEvent.objects.get(action="alert.resolve").source == "dashboard"


def test_viewers_cannot_use_the_buttons(as_viewer, deployment, clock):
    alert = fire(deployment, "quality", clock)
    assert as_viewer.post(f"/alerts/{alert.pk}/acknowledge/").status_code == 403
    assert Alert.objects.get().state == AlertState.FIRING


def test_every_page_shows_a_banner_while_alerts_fire(as_viewer, deployment, clock):
    assert "alert-banner" not in text(as_viewer.get("/"))
    fire(deployment, "quality", clock)
    page = text(as_viewer.get("/"))
    assert "1 alert firing" in page and 'class="nav-count"' in page
    assert "1 alert firing" in text(as_viewer.get("/models/"))


def test_a_permanently_failed_email_is_shown_in_the_banner_and_can_be_retried(as_operator, deployment, clock, settings):
    settings.ONCALL_EMAILS = []
    alert = fire(deployment, "quality", clock)
    deliver_pending_notifications(clock.now)
    page = text(as_operator.get("/deployments/"))
    assert "1 alert e-mail could not be delivered" in page and "ONCALL_EMAILS" in page
    listing = text(as_operator.get("/alerts/"))
    assert "E-mails that could not be delivered" in listing and f"#{alert.pk}" in listing
    notification = Notification.objects.get()
    assert "try again" in text(as_operator.get(f"/alerts/{alert.pk}/"))
    as_operator.post(f"/alerts/notifications/{notification.pk}/retry/")
    assert Notification.objects.get().status == NotificationStatus.PENDING


def test_an_operator_creates_a_rule_through_the_form(as_operator, deployment):
    response = as_operator.post(
        "/alerts/rules/new/",
        {
            "name": "slow-demo",
            "kind": "latency",
            "deployment": deployment.pk,
            "parameters": '{"threshold_s": 2, "window_s": 120}',
            "severity": "critical",
            "for_s": 60,
            "repeat_interval_s": 3600,
            "recipients": "a@example.org, b@example.org",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    rule = AlertRule.objects.get(name="slow-demo")
    assert rule.parameters["threshold_s"] == 2 and rule.parameters["percentile"] == 95
    assert rule.recipients == ["a@example.org", "b@example.org"] and rule.deployment == deployment
    assert AuditEvent.objects.get(action="alert_rule.create").source == "dashboard"
    assert "slow-demo" in text(as_operator.get("/alerts/rules/"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"parameters": '{"window_s": 60}'}, "threshold_s: is required"),
        ({"parameters": "{not json"}, "is not valid JSON"),
        ({"recipients": "a@example.org, nope"}, "&#x27;nope&#x27; is not an e-mail address"),
        ({"for_s": -1}, "must be between 0 and"),
    ],
)
def test_bad_rule_input_is_shown_on_the_form(as_operator, changes, message):
    data = {
        "name": "x",
        "kind": "latency",
        "parameters": '{"threshold_s": 1}',
        "severity": "warning",
        "for_s": 0,
        "repeat_interval_s": 3600,
        **changes,
    }
    response = as_operator.post("/alerts/rules/new/", data)
    assert response.status_code == 400
    assert message in text(response)
    assert not AlertRule.objects.filter(name="x").exists()


def test_an_operator_edits_a_rule_but_not_its_kind(as_operator, actor):
    rule = create_rule(actor, name="errors", kind=AlertKind.ERROR_RATE, parameters={"threshold": 0.1})
    page = text(as_operator.get(f"/alerts/rules/{rule.pk}/edit/"))
    assert "disabled" in page and "0.1" in page
    response = as_operator.post(
        f"/alerts/rules/{rule.pk}/edit/",
        {
            "name": "errors",
            "kind": "drift",
            "parameters": '{"threshold": 0.2}',
            "severity": "info",
            "for_s": 0,
            "repeat_interval_s": 0,
        },
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.kind == AlertKind.ERROR_RATE and rule.parameters["threshold"] == 0.2 and not rule.enabled


def test_rule_pages_need_the_right_role(as_viewer, actor):
    rule = create_rule(actor, name="leaks", kind=AlertKind.LEAK)
    assert as_viewer.get(f"/alerts/rules/{rule.pk}/").status_code == 200
    assert as_viewer.get("/alerts/rules/new/").status_code == 403
    assert as_viewer.get(f"/alerts/rules/{rule.pk}/edit/").status_code == 403
    assert as_viewer.post(f"/alerts/rules/{rule.pk}/delete/").status_code == 403


def test_an_admin_deletes_a_rule_and_its_alerts_stay(as_admin, deployment, clock):
    alert = fire(deployment, "quality", clock)
    rule = alert.rule
    assert as_admin.post(f"/alerts/rules/{rule.pk}/delete/").status_code == 302
    alert.refresh_from_db()
    assert alert.rule is None and alert.rule_name == rule.name and alert.state == AlertState.RESOLVED
    assert "(deleted)" in text(as_admin.get(f"/alerts/{alert.pk}/"))


@pytest.mark.django_db(transaction=True)
async def test_alert_pages_and_the_banner_render_over_asgi(viewer, operator):
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    await sync_to_async(signal)(AlertKind.JOB_FAILURE, None, "cleanup", True, "job cleanup failed")
    alert = await Alert.objects.aget()
    client = AsyncClient()
    await client.aforce_login(viewer)
    for path in ("/alerts/", f"/alerts/{alert.pk}/", "/alerts/rules/", "/"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "1 alert firing" in text(response)
    api = await client.get(f"/api/v1/alerts/{alert.pk}/")
    assert api.status_code == 200 and api.json()["title"] == "job cleanup failed"
