"""Rule parameters per kind, SMTP error classification, and the docs that describe both."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

import pytest

from controlplane.alerts.rules import KINDS, validate_parameters
from controlplane.alerts.transports import classify_smtp_error
from controlplane.choices import AlertKind
from controlplane.services.errors import InvalidInput

DOCS = Path(__file__).resolve().parents[3] / "docs" / "alerts.md"


def errors_of(kind, parameters) -> dict:
    with pytest.raises(InvalidInput) as caught:
        validate_parameters(kind, parameters)
    return caught.value.errors["parameters"]


def test_defaults_fill_what_is_left_out():
    assert validate_parameters(AlertKind.LATENCY, {"threshold_s": 2}) == {
        "threshold_s": 2.0,
        "window_s": 300,
        "percentile": 95.0,
        "metric": "latency_s",
        "min_requests": 10,
    }
    assert validate_parameters(AlertKind.LEAK, None) == {}
    assert validate_parameters(AlertKind.DRIFT, {"checks": ["quality"]}) == {"checks": ["quality"]}


@pytest.mark.parametrize(
    ("kind", "parameters", "key", "message"),
    [
        (AlertKind.LATENCY, {}, "threshold_s", "is required"),
        (AlertKind.LATENCY, {"threshold_s": 0}, "threshold_s", "must be above 0"),
        (AlertKind.LATENCY, {"threshold_s": float("nan")}, "threshold_s", "must be a number"),
        (AlertKind.LATENCY, {"threshold_s": True}, "threshold_s", "must be a number"),
        (AlertKind.LATENCY, {"threshold_s": 1, "window_s": 2.5}, "window_s", "must be a whole number"),
        (AlertKind.LATENCY, {"threshold_s": 1, "percentile": 101}, "percentile", "at most 100"),
        (AlertKind.ERROR_RATE, {"threshold": 1.5}, "threshold", "at most 1"),
        (AlertKind.ERROR_RATE, {"threshold": 0.1, "min_requests": 0}, "min_requests", "at least 1"),
        (AlertKind.DRIFT, {"checks": ["weather"]}, "checks", "unknown: weather"),
        (AlertKind.JOB_FAILURE, {"jobs": "cleanup"}, "jobs", "must be a list of names"),
        (AlertKind.LEAK, {"threshold": 1}, "threshold", "is not a parameter of leak rules (they take: none)"),
        (AlertKind.WORKER_RESTART, {"window_s": 10}, "window_s", "at least 60"),
    ],
)
def test_parameters_that_do_not_fit_the_kind_are_named(kind, parameters, key, message):
    errors = errors_of(kind, parameters)
    assert message in errors[key][0]


def test_an_unknown_kind_is_refused():
    with pytest.raises(InvalidInput) as caught:
        validate_parameters("weather", {})
    assert "kind" in caught.value.errors


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (smtplib.SMTPDataError(451, b"4.3.0 try again later"), False),
        (smtplib.SMTPDataError(554, b"5.7.1 refused"), True),
        (smtplib.SMTPConnectError(421, b"too busy"), False),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), True),
        (smtplib.SMTPSenderRefused(550, b"no relay", "a@b"), True),
        (smtplib.SMTPRecipientsRefused({"a@x": (550, b"no"), "b@x": (450, b"later")}), False),
        (smtplib.SMTPRecipientsRefused({"a@x": (550, b"no"), "b@x": (553, b"bad")}), True),
        (smtplib.SMTPServerDisconnected("gone"), False),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), True),
        (ConnectionRefusedError(111, "refused"), False),
        (TimeoutError("timed out"), False),
        (OSError(101, "Network is unreachable"), False),
        (ssl.SSLCertVerificationError("certificate verify failed"), True),
    ],
)
def test_smtp_errors_are_classified(error, permanent):
    assert classify_smtp_error(error).permanent is permanent


def test_the_docs_describe_every_kind_and_parameter():
    docs = DOCS.read_text()
    for kind, params in KINDS.items():
        assert f"`{kind}`" in docs
        for param in params:
            assert f"`{param.name}`" in docs, f"{kind}.{param.name} is not documented"
    for setting in ("ALERT_MAX_ATTEMPTS", "ALERT_RETRY_BASE_S", "ALERT_CLAIM_TIMEOUT_S", "ONCALL_EMAILS", "EMAIL_URL"):
        assert setting in docs
