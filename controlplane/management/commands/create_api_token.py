"""Create an API token for a user and print it alone on the last line."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from controlplane.choices import AuditSource, TokenScope
from controlplane.services import accounts, audit
from controlplane.services.errors import InvalidInput


class Command(BaseCommand):
    help = "Create a personal API token for USERNAME; the token is printed alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="A label for the token.")
        parser.add_argument("--scope", choices=TokenScope.values, default=TokenScope.FULL)
        parser.add_argument("--expires-days", type=int, default=None, help="Expire after this many days.")
        parser.add_argument("--rate-limit", type=int, default=None, help="Inference requests per minute.")

    def handle(self, *args, username, name, scope, expires_days, rate_limit, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be at least 1.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            token, raw = accounts.issue_token(
                audit.Actor(None, AuditSource.CLI),
                user,
                name=name,
                scope=scope,
                expires_at=expires_at,
                rate_limit_per_minute=rate_limit,
            )
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"Token {token.name!r} for {username} ({token.get_scope_display()}); shown once:")
        self.stdout.write(raw)
