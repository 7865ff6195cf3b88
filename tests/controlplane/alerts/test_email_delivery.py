"""Alert e-mails through a real SMTP server on loopback (aiosmtpd): content, retries, permanent failures,
connection errors, claims, and the embedded default that writes .eml files."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

import pytest

from controlplane.alerts.delivery import deliver_pending_notifications, retry_notification
from controlplane.alerts.rules import create_rule, ensure_default_rules
from controlplane.alerts.service import evaluate_alert_rules, signal
from controlplane.alerts.transports import EmailTransport
from controlplane.choices import AlertKind, NotificationStatus
from controlplane.models import Alert, AlertRule, Notification
from controlplane.services import deployments

pytestmark = pytest.mark.django_db


def fire(deployment, clock, key="quality", statistic=0.41):
    series = [((clock.now.replace(minute=m % 60)).isoformat(), 0.1 + 0.01 * m) for m in range(20)]
    signal(
        AlertKind.DRIFT,
        deployment,
        key,
        True,
        f"{key} score {statistic} below the baseline on {deployment.name}",
        "Agreement with the golden set fell from 0.93 to 0.52.",
        {"statistic": statistic, "threshold": 0.2, "agreement": 0.52, "baseline_agreement": 0.93},
        series,
        threshold=0.2,
        series_label="quality drift statistic",
        now=clock.now,
    )
    return Alert.objects.get(key=key, deployment=deployment, state="firing")


def attempts(notification) -> list[str]:
    return list(notification.attempts.order_by("number").values_list("outcome", flat=True))


def parts(message) -> dict[str, object]:
    return {part.get_content_type(): part for part in message.walk() if not part.is_multipart()}


def test_a_firing_alert_arrives_as_text_html_and_an_inline_chart(smtp_server, deployment, clock, actor):
    deployments.update_deployment(actor, deployment, config={"router_weights": [1, 1, 0.2, 1]}, comment="tune")
    alert = fire(deployment, clock)
    assert deliver_pending_notifications(clock.now) == {"sent": 1}
    [message] = smtp_server.messages
    assert smtp_server.envelopes[0].rcpt_tos == ["oncall@example.org"]
    assert message["Subject"] == f"[FIRING warning] quality score 0.41 below the baseline on {deployment.name}"
    assert message["From"] == "alerts@controlplane.test" and message["X-Alert-Id"] == str(alert.pk)
    found = parts(message)
    assert set(found) == {"text/plain", "text/html", "image/png"}
    text, html, png = (found[t].get_content() for t in ("text/plain", "text/html", "image/png"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    cid = found["image/png"]["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html and found["image/png"].get_content_disposition() == "inline"
    diff = f"https://cp.example.org/deployments/{deployment.pk}/?from=1&amp;to=2#diff"
    for body, link in ((text, diff.replace("&amp;", "&")), (html, diff)):
        assert "0.41" in body and "0.52" in body and "0.93" in body  # the figures
        assert link in body
        assert f"https://cp.example.org/alerts/{alert.pk}/" in body
        assert "router_weights" in body and "tune" in body and "demo-cpu" in body
    assert "statistic: 0.41" in text and "Threshold:  0.2" in text
    assert re.search(r"statistic</td><td[^>]*>0\.41</td>", html) and re.search(r"Threshold</td><td>0\.2</td>", html)
    assert message.get_content_type() == "multipart/related"


def test_the_server_fails_twice_and_the_third_try_delivers(smtp_server, deployment, clock):
    smtp_server.fail_next("451 4.3.0 Mailbox temporarily unavailable", times=2)
    fire(deployment, clock)
    notification = Notification.objects.get()
    assert deliver_pending_notifications(clock.now) == {"retrying": 1}
    assert deliver_pending_notifications(clock.advance(59)) == {}  # backoff: not due before 60 s
    assert deliver_pending_notifications(clock.advance(1)) == {"retrying": 1}
    assert deliver_pending_notifications(clock.advance(119)) == {}  # then 120 s
    assert deliver_pending_notifications(clock.advance(1)) == {"sent": 1}
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT and notification.attempt_count == 3
    assert attempts(notification) == ["temporary_failure", "temporary_failure", "sent"]
    assert "451" in notification.attempts.first().error
    assert len(smtp_server.messages) == 1


def test_a_permanent_failure_is_recorded_and_does_not_block_another_alert(smtp_server, deployment, clock, actor):
    AlertRule.objects.filter(kind=AlertKind.DRIFT).delete()
    create_rule(
        actor,
        name="to-nobody",
        kind=AlertKind.DRIFT,
        parameters={"checks": ["quality"]},
        recipients=["nobody@example.org"],
    )
    create_rule(actor, name="to-oncall", kind=AlertKind.DRIFT, parameters={"checks": ["latency"]})
    smtp_server.refuse_rcpt, smtp_server.refuse_rcpt_for = "550 5.1.1 mailbox unavailable", {"nobody@example.org"}
    broken = fire(deployment, clock, key="quality")
    working = fire(deployment, clock, key="latency")
    assert deliver_pending_notifications(clock.now) == {"failed": 1, "sent": 1}
    failed = broken.notifications.get()
    assert failed.status == NotificationStatus.FAILED and attempts(failed) == ["permanent_failure"]
    assert "550" in failed.last_error and "nobody@example.org" in failed.last_error
    assert working.notifications.get().status == NotificationStatus.SENT
    assert [m["X-Alert-Id"] for m in smtp_server.messages] == [str(working.pk)]
    assert deliver_pending_notifications(clock.advance(3600)) == {}  # a permanent failure is not retried


def test_a_554_reply_to_the_message_is_permanent(smtp_server, deployment, clock):
    smtp_server.fail_next("554 5.7.1 message refused")
    fire(deployment, clock)
    deliver_pending_notifications(clock.now)
    assert attempts(Notification.objects.get()) == ["permanent_failure"]


def test_no_server_listening_is_a_temporary_failure(no_smtp_server, deployment, clock):
    fire(deployment, clock)
    assert deliver_pending_notifications(clock.now) == {"retrying": 1}
    notification = Notification.objects.get()
    assert notification.status == NotificationStatus.PENDING
    assert "connection refused" in notification.last_error


def test_temporary_failures_give_up_after_the_last_try(no_smtp_server, settings, deployment, clock):
    settings.ALERT_MAX_ATTEMPTS = 3
    fire(deployment, clock)
    results = [deliver_pending_notifications(clock.advance(3600)) for _ in range(4)]
    assert results == [{"retrying": 1}, {"retrying": 1}, {"failed": 1}, {}]
    notification = Notification.objects.get()
    assert notification.status == NotificationStatus.FAILED and notification.attempt_count == 3
    assert notification.last_error.startswith("gave up after 3 attempts")


def test_a_failed_notification_can_be_retried_once_the_server_is_back(smtp_server, deployment, clock, actor):
    smtp_server.fail_next("550 5.7.0 relay denied")
    fire(deployment, clock)
    deliver_pending_notifications(clock.now)
    notification = retry_notification(actor, Notification.objects.get(), now=clock.advance(5))
    assert deliver_pending_notifications(clock.now) == {"sent": 1}
    assert attempts(notification) == ["permanent_failure", "sent"]


def test_a_claimed_notification_is_not_sent_twice(smtp_server, deployment, clock):
    fire(deployment, clock)
    Notification.objects.update(claimed_at=clock.now)  # another process is sending it right now
    assert deliver_pending_notifications(clock.advance(10)) == {}
    assert smtp_server.messages == []
    assert deliver_pending_notifications(clock.advance(300)) == {"sent": 1}  # its claim went stale: taken over


def test_without_any_recipient_the_failure_says_how_to_fix_it(settings, deployment, clock):
    settings.ONCALL_EMAILS = []
    fire(deployment, clock)
    assert deliver_pending_notifications(clock.now) == {"failed": 1}
    assert "ONCALL_EMAILS" in Notification.objects.get().last_error


def test_admins_are_the_last_resort_recipients(settings, deployment, clock, admin_user, mailoutbox):
    settings.ONCALL_EMAILS = []
    fire(deployment, clock)
    deliver_pending_notifications(clock.now)
    assert mailoutbox[0].to == ["admin@example.org"]


def test_reminder_and_resolve_notice_thread_under_the_firing_email(smtp_server, deployment, clock):
    ensure_default_rules()
    AlertRule.objects.filter(kind=AlertKind.DRIFT).update(repeat_interval_s=600)
    fire(deployment, clock)
    deliver_pending_notifications(clock.now)
    evaluate_alert_rules(clock.advance(600))
    deliver_pending_notifications(clock.now)
    signal(AlertKind.DRIFT, deployment, "quality", False, values={"statistic": 0.05}, now=clock.advance(60))
    deliver_pending_notifications(clock.now)
    first, reminder, resolved = smtp_server.messages
    assert reminder["Subject"].startswith("[STILL FIRING warning]") and reminder["Subject"].endswith("(for 10 minutes)")
    assert resolved["Subject"].startswith("[RESOLVED]")
    assert reminder["In-Reply-To"] == resolved["In-Reply-To"] == first["References"]
    text = re.sub(r"\s+", " ", parts(resolved)["text/plain"].get_content())
    assert "RESOLVED after 11" in text and "the condition cleared" in text and "statistic: 0.05" in text


def test_the_embedded_default_writes_a_readable_eml_file(settings, tmp_path, deployment, clock):
    settings.EMAIL_BACKEND = "controlplane.alerts.mailfiles.EmlFileBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    settings.ONCALL_EMAILS = ["oncall@example.org"]
    alert = fire(deployment, clock)
    assert deliver_pending_notifications(clock.now) == {"sent": 1}
    [path] = (tmp_path / "mail").glob("*.eml")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["To"] == "oncall@example.org" and message["X-Alert-Id"] == str(alert.pk)
    assert "0.41" in parts(message)["text/plain"].get_content()
    assert "image/png" in parts(message)


def test_while_the_server_is_unreachable_the_other_emails_wait_without_using_up_tries(
    no_smtp_server, deployment, clock
):
    first = fire(deployment, clock, key="quality")
    second = fire(deployment, clock, key="latency")
    assert deliver_pending_notifications(clock.now) == {"retrying": 1, "deferred": 1}
    assert first.notifications.get().attempt_count == 1
    assert second.notifications.get().attempt_count == 0
    assert second.notifications.get().status == NotificationStatus.PENDING


def test_a_refused_recipient_does_not_hold_back_the_next_email(smtp_server, deployment, clock, actor):
    smtp_server.refuse_rcpt, smtp_server.refuse_rcpt_for = "450 4.2.1 mailbox busy", {"busy@example.org"}
    AlertRule.objects.filter(kind=AlertKind.DRIFT).delete()
    create_rule(
        actor, name="to-busy", kind=AlertKind.DRIFT, parameters={"checks": ["quality"]}, recipients=["busy@example.org"]
    )
    create_rule(actor, name="to-oncall", kind=AlertKind.DRIFT, parameters={"checks": ["latency"]})
    fire(deployment, clock, key="quality")
    fire(deployment, clock, key="latency")
    assert deliver_pending_notifications(clock.now) == {"retrying": 1, "sent": 1}  # the server is up: no deferral


def test_two_delivery_loops_at_once_send_each_email_exactly_once(settings, deployment, clock, monkeypatch, mailoutbox):
    """The second loop starts while the first is in the middle of sending its first e-mail (as another process
    would): it skips the claimed one and sends the rest; the first then finds them taken."""
    settings.ONCALL_EMAILS = ["oncall@example.org"]
    for key in ("quality", "latency", "distribution"):
        fire(deployment, clock, key=key)
    real_notify, second_loop = EmailTransport.notify, {}

    def notify_and_start_another_loop(self, alert, notification):
        if "started" not in second_loop:
            second_loop["started"] = True
            second_loop["result"] = deliver_pending_notifications(clock.now)
        real_notify(self, alert, notification)

    monkeypatch.setattr(EmailTransport, "notify", notify_and_start_another_loop)
    first_loop = deliver_pending_notifications(clock.now)
    assert second_loop["result"] == {"sent": 2}  # the claimed one is not even due for it
    assert first_loop == {"sent": 1, "skipped": 2}
    assert sorted(m.extra_headers["X-Alert-Id"] for m in mailoutbox) == sorted(
        str(pk) for pk in Alert.objects.values_list("pk", flat=True)
    )
    assert all(n.attempts.count() == 1 for n in Notification.objects.all())
