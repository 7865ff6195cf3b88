"""An e-mail backend that writes each message as an .eml file a person can open (the embedded default)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone


class EmlFileBackend(BaseEmailBackend):
    """Writes ``<EMAIL_FILE_PATH>/<timestamp>-<id>.eml``, one file per message, atomically."""

    def __init__(self, *args, file_path: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.directory = Path(file_path or settings.EMAIL_FILE_PATH)  # type: ignore[misc]  # set by env_email

    def send_messages(self, email_messages) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        sent = 0
        for message in email_messages:
            name = f"{timezone.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}.eml"
            tmp = self.directory / f".{name}.tmp"
            tmp.write_bytes(message.message().as_bytes())
            os.replace(tmp, self.directory / name)
            sent += 1
        return sent
