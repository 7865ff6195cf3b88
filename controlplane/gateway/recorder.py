"""Recording each request once, off the hot path: rows go to an in-memory buffer that a service thread writes in
batches. Outside ``serve`` (tests, other processes without the service) rows are written at once."""

from __future__ import annotations

import logging
import threading
from collections import deque

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from controlplane import runtime
from controlplane.models import InferenceRecord

from .db import reconnecting

logger = logging.getLogger(__name__)

_active: Recorder | None = None


class Recorder(runtime.ServiceThread):
    """Writes buffered ``InferenceRecord`` rows every ``idle_s`` in one bulk insert; flushes what is left on stop."""

    name = "gateway-recorder"
    idle_s = 0.5
    batch = 1000

    def __init__(self) -> None:
        super().__init__()
        self.buffer: deque[InferenceRecord] = deque(maxlen=settings.GATEWAY_RECORD_BUFFER)
        self._lock = threading.Lock()

    def add(self, record: InferenceRecord) -> None:
        if len(self.buffer) == self.buffer.maxlen:
            logger.warning("the request record buffer is full; the oldest record is dropped")
        self.buffer.append(record)

    def step(self) -> bool:
        with self._lock:
            rows = [self.buffer.popleft() for _ in range(min(self.batch, len(self.buffer)))]
        if rows:
            try:
                InferenceRecord.objects.bulk_create(rows)
            except (OperationalError, InterfaceError):  # the database is away: the rows wait for it
                logger.exception("writing %d request records failed; keeping them for the next try", len(rows))
                with self._lock:
                    self.buffer.extendleft(reversed(rows))
                connection.close()  # a dropped connection is replaced on the next try
                return False
        return len(rows) == self.batch

    def start(self, loop=None) -> None:
        global _active
        super().start(loop)
        _active = self

    def on_stop(self) -> None:
        global _active
        _active = None
        while self.buffer:
            self.step()


async def record(**fields) -> None:
    row = InferenceRecord(**fields)
    if _active is not None:
        _active.add(row)
    else:
        await sync_to_async(reconnecting(row.save))()


runtime.register(Recorder, order=20)
