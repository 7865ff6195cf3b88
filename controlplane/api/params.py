"""Query and path values read by hand (outside serializers and filter sets), checked so that bad input is a 400."""

from __future__ import annotations

from datetime import datetime

from django.utils.dateparse import parse_datetime

from controlplane.services.errors import InvalidInput

__all__ = ["parse_id", "parse_when"]


NO_ID = 0
"""What an integer that no id can be (negative, or beyond 64 bits) becomes: it matches nothing."""


def parse_id(raw: str | None, field: str, what: str = "an id") -> int | None:
    """``None`` for a missing value; otherwise an integer in ASCII digits (``"²".isdigit()`` is true, and ``int``
    fails on it). An empty value is refused: leave the parameter out instead."""
    if raw is None:
        return None
    digits = raw.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidInput.field(field, f"must be {what}")
    number = int(raw)
    return number if 0 < number < 2**63 else NO_ID


def parse_when(raw: str | None, field: str) -> datetime | None:
    """An ISO 8601 date and time; a well-formed but impossible one (month 13) is refused like a malformed one."""
    if raw is None:
        return None
    try:
        when = parse_datetime(raw)
    except ValueError:
        when = None
    if when is None:
        raise InvalidInput.field(field, "must be an ISO 8601 date and time")
    return when
