"""Users with a role, and personal API tokens stored hashed."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone

from controlplane.choices import Role, TokenScope

__all__ = ["ApiToken", "User"]

TOKEN_PREFIX = "lcp_"


class User(AbstractUser):
    """A person who signs in to the dashboard or calls the API. Superusers always act as admins."""

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Inference requests per minute through /v1 across all of this user's tokens; empty for no limit. "
        "No token of the user may have a higher limit.",
    )

    @property
    def effective_role(self) -> str:
        return Role.ADMIN if self.is_superuser else self.role

    def has_role(self, role: str) -> bool:
        """True when this user's role is ``role`` or above."""
        return self.is_active and Role.rank(self.effective_role) >= Role.rank(role)


def hash_token(raw: str) -> str:
    """Tokens are 256-bit random strings, so one SHA-256 round is enough to store them safely."""
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def usable(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True, user__is_active=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    """A personal API token, sent as ``Authorization: Bearer <token>``. Only its hash and first characters are kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=16, choices=TokenScope.choices, default=TokenScope.FULL)
    prefix = models.CharField(max_length=12, help_text="The first characters, to recognise a token in lists.")
    token_hash = models.CharField(max_length=64, unique=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Inference requests per minute through /v1; empty for no limit."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user, name: str, **fields) -> tuple[ApiToken, str]:
        """Create a token and return it with the raw secret, which is shown once and never stored."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, prefix=raw[:10], token_hash=hash_token(raw), **fields)
        return token, raw

    @classmethod
    def lookup(cls, raw: str) -> ApiToken | None:
        return cls.objects.usable().select_related("user").filter(token_hash=hash_token(raw)).first()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())
