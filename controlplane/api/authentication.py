"""API authentication: personal tokens as ``Authorization: Bearer <token>``, or the dashboard's session."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions

from controlplane.choices import TokenScope
from controlplane.models import ApiToken
from controlplane.services.accounts import LAST_USED_RESOLUTION_S, token_from_header


def authenticate_token(raw: str) -> ApiToken:
    """The usable token for ``raw``; raises ``AuthenticationFailed`` otherwise."""
    token = ApiToken.lookup(raw)
    if token is None:
        raise exceptions.AuthenticationFailed("Invalid, expired or revoked API token.")
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > LAST_USED_RESOLUTION_S:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Tokens with the full scope act for their user in the REST API; inference-only tokens are refused here."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        raw = token_from_header(header)
        if raw is None:
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <token>'.")
        token = authenticate_token(raw)
        if token.scope != TokenScope.FULL:
            raise exceptions.PermissionDenied("This token is limited to inference (/v1) and cannot use the REST API.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'
