"""Alerting costs: the chart, one e-mail, delivery through a loopback SMTP server, and one evaluation round of
latency and error-rate rules over stored request records. Prints figures; asserts nothing.

Run from the repository root: `.venv/bin/python bench/bench_alerts.py` (or `make bench`). It uses a fresh SQLite
database in a temporary directory (set DATABASE_URL to measure PostgreSQL instead).
"""

import os
import socket
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="bench-alerts-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

import django

django.setup()

from aiosmtpd.controller import Controller  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from controlplane.alerts.charts import render_chart  # noqa: E402
from controlplane.alerts.delivery import deliver_pending_notifications  # noqa: E402
from controlplane.alerts.messages import render_email  # noqa: E402
from controlplane.alerts.rules import create_rule  # noqa: E402
from controlplane.alerts.service import evaluate_alert_rules, signal  # noqa: E402
from controlplane.alerts.transports import EmailTransport  # noqa: E402
from controlplane.choices import AlertKind  # noqa: E402
from controlplane.models import Alert, InferenceRecord, Node, Notification  # noqa: E402
from controlplane.services import audit, deployments, registry  # noqa: E402
from tests.controlplane.conftest import make_checkpoint  # noqa: E402

DEPLOYMENTS = 10
RECORDS_PER_DEPLOYMENT = 5_000
EMAILS = 200


class Sink:
    received = 0

    async def handle_DATA(self, server, session, envelope):
        Sink.received += 1
        return "250 OK"


def setup():
    call_command("migrate", verbosity=0)
    checkpoint = make_checkpoint(Path(settings.VAR_DIR) / "models" / "demo-v1")
    actor = audit.SYSTEM
    version = registry.register_model_version(actor, name="demo", version="v1", artifact_path=str(checkpoint))
    node = Node.objects.create(hostname="bench", cpu_cores=64, memory_bytes=2**40)
    return [
        deployments.create_deployment(actor, name=f"bench-{i}", model_version=version, node=node)
        for i in range(DEPLOYMENTS)
    ]


def timed(fn, n=1):
    start = time.perf_counter()
    for _ in range(n):
        result = fn()
    return (time.perf_counter() - start) / n, result


def main() -> None:
    targets = setup()
    now = timezone.now()
    series = [((now - timedelta(minutes=24 - i)).isoformat(), 0.2 + 0.1 * (i > 18)) for i in range(24)]
    render_chart(series)  # import matplotlib once
    seconds, png = timed(lambda: render_chart(series, label="p95 latency (s)", threshold=0.25, fired_at=now), 20)
    print(f"{'chart (600x200 PNG, 24 points)':<52} {seconds * 1e3:8.1f} ms   {len(png):>7} bytes")

    settings.ONCALL_EMAILS = ["oncall@example.org"]
    signal(AlertKind.DRIFT, targets[0], "quality", True, "bench", "", {"statistic": 0.4}, series, now=now)
    alert = Alert.objects.get()
    seconds, _ = timed(lambda: render_email(alert, "firing"), 20)
    notification = alert.notifications.get()
    size = len(EmailTransport().build(alert, notification).message().as_bytes())
    print(f"{'render one e-mail (subject, text, HTML, chart)':<52} {seconds * 1e3:8.1f} ms   {size:>7} bytes")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL = "127.0.0.1", port, 0, 0
    settings.EMAIL_TIMEOUT = 10
    try:
        deliver_pending_notifications(now)
        Notification.objects.bulk_create(
            Notification(
                alert=alert, event="reminder", recipients=["oncall@example.org"], next_attempt_at=now, created_at=now
            )
            for _ in range(EMAILS)
        )
        seconds, counts = timed(lambda: deliver_pending_notifications(now, limit=EMAILS))
    finally:
        controller.stop()
    print(
        f"{f'deliver {EMAILS} e-mails to loopback SMTP (one connection each)':<52} {seconds:8.2f} s    "
        f"{EMAILS / seconds:7.1f} e-mails/s  {counts}"
    )

    for target in targets:
        InferenceRecord.objects.bulk_create(
            InferenceRecord(
                at=now - timedelta(seconds=280 * i / RECORDS_PER_DEPLOYMENT),
                deployment=target,
                endpoint="chat",
                status_code=500 if i % 50 == 0 else 200,
                latency_s=0.1 + (i % 100) / 100,
            )
            for i in range(RECORDS_PER_DEPLOYMENT)
        )
    create_rule(audit.SYSTEM, name="slow", kind=AlertKind.LATENCY, parameters={"threshold_s": 0.9})
    create_rule(audit.SYSTEM, name="errors", kind=AlertKind.ERROR_RATE, parameters={"threshold": 0.01})
    seconds, counts = timed(lambda: evaluate_alert_rules(now))
    rows = DEPLOYMENTS * RECORDS_PER_DEPLOYMENT
    print(
        f"{f'evaluate_alert_rules: 2 rules x {DEPLOYMENTS} deployments, {rows} records':<52} {seconds * 1e3:8.1f} ms"
        f"   first round (fires, builds series): {counts}"
    )
    seconds, counts = timed(lambda: evaluate_alert_rules(now))
    print(f"{'evaluate_alert_rules again (alerts ongoing)':<52} {seconds * 1e3:8.1f} ms   {counts}")
    print(f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}")


if __name__ == "__main__":
    main()
