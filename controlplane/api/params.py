"""Query and path values read by hand (outside serializers and filter sets), checked so that bad input is a 400."""

from __future__ import annotations

from datetime import datetime

from django.utils.dateparse import parse_datetime

from controlplane.services.errors import InvalidInput

__all__ = ["parse_id", "parse_when"]


def parse_id(raw: str | None, field: str, what: str = "an id") -> int | None:
    """``None`` for a missing or empty value; otherwise a positive id in ASCII digits (``"²".isdigit()`` is true)."""
    if raw in (None, ""):
        return None
    assert raw is not None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidInput.field(field, f"must be {what}")
    return int(raw)


def parse_when(raw: str | None, field: str) -> datetime | None:
    """An ISO 8601 date and time; a well-formed but impossible one (month 13) is refused like a malformed one."""
    if raw in (None, ""):
        return None
    assert raw is not None
    try:
        when = parse_datetime(raw)
    except ValueError:
        when = None
    if when is None:
        raise InvalidInput.field(field, "must be an ISO 8601 date and time")
    return when
