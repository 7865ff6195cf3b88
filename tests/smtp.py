"""A real SMTP server for tests: aiosmtpd on loopback, keeping what it receives, able to fail on purpose."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it receives. ``data_replies``: replies to give to the next DATA commands
    instead of accepting (e.g. ``"451 4.3.0 try later"``); ``refuse_rcpt``: a reply for every RCPT."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    refuse_rcpt: str | None = None
    refuse_rcpt_for: set[str] = field(default_factory=set)

    def fail_next(self, reply: str, times: int = 1) -> None:
        self.data_replies.extend([reply] * times)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_rcpt and (not self.refuse_rcpt_for or address in self.refuse_rcpt_for):
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_replies:
            return self.data_replies.pop(0)
        self.envelopes.append(envelope)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"
