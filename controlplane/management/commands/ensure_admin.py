"""Create the first admin user if there is none: password from ADMIN_PASSWORD, else generated and printed once; its
e-mail address from ADMIN_EMAIL, else a local address, so that alerts reach someone from the first minute (without
mail settings they are written to var/mail/)."""

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db.models import Q

from controlplane.choices import AuditSource, Role
from controlplane.conf import env_secret, env_str
from controlplane.services import audit


class Command(BaseCommand):
    help = "Create the admin user (ADMIN_USERNAME, default 'admin') unless an admin exists."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(Q(is_superuser=True) | Q(role=Role.ADMIN), is_active=True).exists():
            self.stdout.write("An admin user exists; nothing to do.")
            return
        username = env_str("ADMIN_USERNAME", "admin")
        password = env_secret("ADMIN_PASSWORD")
        generated = password is None
        if generated:
            password = secrets.token_urlsafe(12)
        email = env_str("ADMIN_EMAIL", f"{username}@localhost")
        user = User.objects.create_superuser(username=username, password=password, email=email, role=Role.ADMIN)
        audit.record(
            audit.Actor(None, AuditSource.CLI),
            "user.create",
            user,
            after=audit.snapshot(user, exclude=("password",)),
            message="first admin user",
        )
        self.stdout.write(self.style.SUCCESS(f"Created the admin user {username!r} <{email}>."))
        if "ADMIN_EMAIL" not in os.environ and not settings.ONCALL_EMAILS:
            where = (
                "written to var/mail/" if "mailfiles" in settings.EMAIL_BACKEND else "sent through the mail settings"
            )
            self.stdout.write(
                f"Alert e-mails go to {email} ({where}); set ADMIN_EMAIL or ONCALL_EMAILS to send them elsewhere."
            )
        if generated:
            self.stdout.write(f"Its password (shown once; set ADMIN_PASSWORD to choose it): {password}")
