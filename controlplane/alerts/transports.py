"""Notification transports. Each sends one alert event to its recipients through one channel and says, when it
cannot, whether trying again could help (``TransportError(permanent=False)``) or not (``permanent=True``).

Only e-mail exists today; a chat webhook would be another ``Transport`` with its own ``notify``.
"""

from __future__ import annotations

import smtplib
import ssl
from email.mime.image import MIMEImage
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from controlplane.models import Alert, Notification

from .messages import render_email

__all__ = ["TRANSPORTS", "EmailTransport", "Transport", "TransportError", "classify_smtp_error"]


class TransportError(Exception):
    """A notification could not be sent. ``permanent``: retrying the same message will not help. ``unreachable``:
    the server could not be reached at all, so the other queued messages would fail the same way right now."""

    def __init__(self, message: str, *, permanent: bool = False, unreachable: bool = False):
        super().__init__(message)
        self.permanent = permanent
        self.unreachable = unreachable


class Transport:
    """Sends one notification (an alert event: firing, reminder, resolved) to its recipients; raises
    ``TransportError`` on failure."""

    name = ""

    def notify(self, alert: Alert, notification: Notification) -> None:
        raise NotImplementedError


def _reply_text(message) -> str:
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


def classify_smtp_error(exc: BaseException) -> TransportError:
    """SMTP 5xx replies, refused certificates and unsupported extensions are permanent; 4xx replies, refused or
    dropped connections, timeouts and other network errors are temporary."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{rcpt}: {code} {_reply_text(msg)}" for rcpt, (code, msg) in exc.recipients.items())
        permanent = bool(codes) and all(500 <= code < 600 for code in codes)
        return TransportError(f"recipients refused: {detail}", permanent=permanent)
    if isinstance(exc, smtplib.SMTPResponseException):
        permanent = 500 <= exc.smtp_code < 600
        unreachable = isinstance(exc, smtplib.SMTPConnectError) and not permanent  # e.g. 421 at the greeting
        text = f"SMTP {exc.smtp_code} {_reply_text(exc.smtp_error)}"
        return TransportError(text, permanent=permanent, unreachable=unreachable)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return TransportError(f"the SMTP server does not support this: {exc}", permanent=True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransportError(f"TLS certificate refused: {exc}", permanent=True)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransportError(f"the SMTP server closed the connection: {exc}", unreachable=True)
    if isinstance(exc, ConnectionRefusedError):
        where = f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
        return TransportError(f"connection refused by {where}", unreachable=True)
    if isinstance(exc, TimeoutError):
        where = f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
        return TransportError(f"timed out talking to {where}", unreachable=True)
    if isinstance(exc, OSError):
        return TransportError(f"{type(exc).__name__}: {exc}", unreachable=True)
    if isinstance(exc, smtplib.SMTPException):
        return TransportError(f"{type(exc).__name__}: {exc}")
    return TransportError(f"{type(exc).__name__}: {exc}", permanent=True)


def _message_id(alert: Alert) -> str:
    """The id of the alert's first e-mail; later ones refer to it so mail clients thread them together."""
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    return f"<alert-{alert.pk}.{int(alert.started_at.timestamp())}@{host}>"


class EmailTransport(Transport):
    """HTML + text e-mail through Django's configured backend (SMTP, or .eml files in the embedded mode), with the
    chart as an inline image referenced by ``cid:`` from the HTML."""

    name = "email"

    def build(self, alert: Alert, notification: Notification) -> EmailMultiAlternatives:
        event = notification.event
        rendered = render_email(alert, event, at=notification.created_at)
        thread = _message_id(alert)
        headers = {"X-Alert-Id": str(alert.pk), "X-Alert-Event": event, "References": thread}
        if event != "firing":
            headers["In-Reply-To"] = thread
        message = EmailMultiAlternatives(
            rendered.subject,
            rendered.text,
            settings.DEFAULT_FROM_EMAIL,
            list(notification.recipients),
            headers=headers,
            connection=get_connection(fail_silently=False),
        )
        message.attach_alternative(rendered.html, "text/html")
        if rendered.chart_png:
            # the image belongs to the HTML, shown inline, not as an attachment (django-stubs lack this attribute)
            message.mixed_subtype = "related"  # type: ignore[attr-defined]
            image = MIMEImage(rendered.chart_png, "png")
            image.add_header("Content-ID", f"<{rendered.chart_cid}>")
            image.add_header("Content-Disposition", "inline", filename="chart.png")
            message.attach(image)
        return message

    def notify(self, alert: Alert, notification: Notification) -> None:
        if not notification.recipients:
            raise TransportError(
                "no recipients: set the rule's recipients, ONCALL_EMAILS, or an e-mail address on an admin user",
                permanent=True,
            )
        message = self.build(alert, notification)
        try:
            message.send()
        except Exception as exc:
            raise classify_smtp_error(exc) from exc


TRANSPORTS: dict[str, type[Transport]] = {EmailTransport.name: EmailTransport}
