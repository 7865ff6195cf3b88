"""Users and API tokens."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from controlplane.choices import Role, TokenScope
from controlplane.models import ApiToken

from . import audit
from .errors import InvalidInput

__all__ = ["LAST_USED_RESOLUTION_S", "create_user", "issue_token", "revoke_token", "token_from_header", "update_user"]

USER_AUDIT_EXCLUDE = ("password",)
# last_used_at is written at most this often per token, so that a busy client does not write on every request.
LAST_USED_RESOLUTION_S = 60


def token_from_header(header: str) -> str | None:
    """The raw token in an ``Authorization`` header value, or None when it is not a bearer header."""
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


def issue_token(
    actor: audit.Actor,
    user,
    *,
    name: str,
    scope: str = TokenScope.FULL,
    expires_at=None,
    rate_limit_per_minute: int | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``user``; the raw secret is returned once and never stored. A token's rate limit may not exceed
    its user's (``User.rate_limit_per_minute``); without one of its own, the user's limit applies to it."""
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput.field("expires_at", "must be in the future")
    ceiling = getattr(user, "rate_limit_per_minute", None)
    if ceiling is not None and rate_limit_per_minute is not None and rate_limit_per_minute > ceiling:
        raise InvalidInput.field(
            "rate_limit_per_minute", f"must be at most {ceiling}, the limit of {user.get_username()} across all tokens"
        )
    with transaction.atomic():
        token, raw = ApiToken.issue(
            user, name, scope=scope, expires_at=expires_at, rate_limit_per_minute=rate_limit_per_minute
        )
        audit.record(actor, "api_token.create", token, after=audit.snapshot(token, exclude=("token_hash",)))
    return token, raw


def revoke_token(actor: audit.Actor, token: ApiToken) -> ApiToken:
    if token.revoked_at is not None:
        return token
    with transaction.atomic():
        before = audit.snapshot(token, exclude=("token_hash",))
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(
            actor, "api_token.revoke", token, before=before, after=audit.snapshot(token, exclude=("token_hash",))
        )
    return token


def _check_password(password: str, user) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput({"password": exc.messages}) from None


def create_user(
    actor: audit.Actor, *, username: str, password: str, role: str = Role.VIEWER, email: str = "", **extra
) -> object:
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        raise InvalidInput.field("username", f"{username!r} is taken")
    user = User(username=username, email=email, role=role, **extra)
    _check_password(password, user)
    user.set_password(password)
    with transaction.atomic():
        user.save()
        audit.record(actor, "user.create", user, after=audit.snapshot(user, exclude=USER_AUDIT_EXCLUDE))
    return user


def update_user(actor: audit.Actor, user, *, password: str | None = None, **changes):
    with transaction.atomic():
        before = audit.snapshot(user, exclude=USER_AUDIT_EXCLUDE)
        for key, value in changes.items():
            setattr(user, key, value)
        if password:
            _check_password(password, user)
            user.set_password(password)
        user.save()
        audit.record(
            actor,
            "user.update",
            user,
            before=before,
            after=audit.snapshot(user, exclude=USER_AUDIT_EXCLUDE),
            message="password changed" if password else "",
        )
    return user
