"""One object for the 1 Hz loop: host and GPU readings of this machine, and the latest of them for readers."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

from .host import HostCollector
from .nvml import NvmlCollector
from .samples import HostSample, Snapshot

__all__ = ["LocalCollector"]

log = logging.getLogger(__name__)


class LocalCollector:
    """``tick()`` reads the host and every GPU and returns a :class:`Snapshot`; ``latest`` is the last one.

    ``latest`` is what the Prometheus exposition reads (``provider=collector.latest_snapshot``); replacing it is one
    attribute assignment, so readers on other threads see either the old or the new snapshot, never a mix.
    """

    def __init__(
        self,
        *,
        nvml: NvmlCollector | None = None,
        host: HostCollector | None = None,
        hostname: str | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.nvml = nvml if nvml is not None else NvmlCollector()
        self.host = host if host is not None else HostCollector()
        self.hostname = hostname or socket.gethostname()
        self._wall_clock = wall_clock
        self.latest: Snapshot | None = None

    def tick(self) -> Snapshot:
        ts = self._wall_clock()
        host = self._host_sample()
        gpus = tuple(self.nvml.collect())
        snapshot = Snapshot(
            ts=ts,
            hostname=self.hostname,
            host=host,
            gpus=gpus,
            nvml_available=self.nvml.available,
            nvml_reason=self.nvml.reason,
        )
        self.latest = snapshot
        return snapshot

    def latest_snapshot(self) -> Snapshot | None:
        return self.latest

    def close(self) -> None:
        self.nvml.shutdown()

    def _host_sample(self) -> HostSample | None:
        try:
            return self.host.collect()
        except Exception:  # psutil failing must not stop the GPU readings
            log.exception("Reading the host's CPU and memory failed")
            return None
