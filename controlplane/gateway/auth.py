"""Callers authenticate with their API token (either scope). Lookups are kept for a few seconds in this process so
that a busy client does not cost a database query per request; a revoked token stops working within that time."""

from __future__ import annotations

import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from controlplane.models import ApiToken
from controlplane.services.accounts import LAST_USED_RESOLUTION_S, token_from_header

from .db import reconnecting
from .errors import GatewayError


@dataclass(frozen=True)
class Caller:
    token_id: int
    user_id: int
    username: str
    rate_limit_per_minute: int | None
    user_rate_limit_per_minute: int | None = None


_cache: dict[str, tuple[float, Caller]] = {}


@reconnecting
def _lookup(raw: str) -> Caller | None:
    token = ApiToken.lookup(raw)
    if token is None:
        return None
    from django.utils import timezone

    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > LAST_USED_RESOLUTION_S:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return Caller(
        token.pk,
        token.user_id,
        token.user.get_username(),
        token.rate_limit_per_minute,
        getattr(token.user, "rate_limit_per_minute", None),
    )


async def authenticate(request) -> Caller:
    raw = token_from_header(request.headers.get("Authorization", ""))
    if raw is None:
        raise GatewayError(401, "Send your API token as 'Authorization: Bearer <token>'.", code="missing_api_key")
    now = time.monotonic()
    hit = _cache.get(raw)
    if hit is not None and hit[0] > now:
        return hit[1]
    caller = await sync_to_async(_lookup)(raw)
    if caller is None:
        _cache.pop(raw, None)
        raise GatewayError(401, "Invalid, expired or revoked API token.", code="invalid_api_key")
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[raw] = (now + settings.GATEWAY_TOKEN_CACHE_S, caller)
    return caller


def forget_tokens() -> None:
    """Drop cached lookups (tests; revocation in this process)."""
    _cache.clear()
