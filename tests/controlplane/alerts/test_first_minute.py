"""A fresh install's alerts reach someone: the first admin has a local address, the first alert is an .eml in
var/mail/ with nothing set up, a retry finds the recipients again, and links point at the address serve listens on."""

from __future__ import annotations

import io
from email import message_from_bytes

from django.core.management import call_command

from controlplane.alerts.delivery import deliver_pending_notifications, retry_notification
from controlplane.choices import NotificationStatus
from controlplane.management.commands.serve import site_url
from controlplane.models import Notification, User

from .test_email_delivery import fire


def test_the_first_admin_gets_a_local_address_and_the_first_alert_lands_in_var_mail(
    settings, tmp_path, deployment, clock, monkeypatch
):
    monkeypatch.delenv("ADMIN_EMAIL", raising=False)
    settings.ONCALL_EMAILS = []
    settings.EMAIL_BACKEND = "controlplane.alerts.mailfiles.EmlFileBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    assert "Alert e-mails go to admin@localhost (written to var/mail/)" in out.getvalue()
    assert User.objects.get(username="admin").email == "admin@localhost"
    fire(deployment, clock)
    assert deliver_pending_notifications(clock.now) == {"sent": 1}
    [eml] = list((tmp_path / "mail").glob("*.eml"))
    assert message_from_bytes(eml.read_bytes())["To"] == "admin@localhost"


def test_admin_email_chooses_the_address(settings, monkeypatch, db):
    monkeypatch.setenv("ADMIN_EMAIL", "ops@example.org")
    call_command("ensure_admin", stdout=io.StringIO())
    assert User.objects.get(username="admin").email == "ops@example.org"


def test_a_retry_sends_to_the_recipients_as_they_are_now(no_smtp_server, settings, deployment, clock, actor):
    settings.ONCALL_EMAILS = []
    settings.ALERT_MAX_ATTEMPTS = 3
    fire(deployment, clock)
    deliver_pending_notifications(clock.now)
    notification = Notification.objects.get()
    assert notification.status == NotificationStatus.FAILED and "no recipients" in notification.last_error
    settings.ONCALL_EMAILS = ["oncall@example.org"]
    retry_notification(actor, notification, now=clock.advance(5))
    notification.refresh_from_db()
    assert notification.recipients == ["oncall@example.org"]


def test_links_point_at_the_address_serve_listens_on():
    assert site_url("127.0.0.1", 8123) == "http://127.0.0.1:8123"
    assert site_url("::1", 9000) == "http://[::1]:9000"
    assert site_url("0.0.0.0", 80).startswith("http://") and "0.0.0.0" not in site_url("0.0.0.0", 80)
