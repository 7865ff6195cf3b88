"""One process's memory, CPU and threads (psutil); a process that exits is reported as gone, never raised."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psutil

from .samples import ProcessSample

__all__ = ["ProcessCollector"]


class ProcessCollector:
    """Watches one pid; one ``collect()`` per tick. Once the process is gone it stays gone (pids get reused:
    a new process with the same pid is not the one we were watching). Make a new collector for a new process.
    """

    def __init__(self, pid: int, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.pid = pid
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._gone = False
        self._process: psutil.Process | None = None
        self._error: str | None = None
        try:
            self._process = psutil.Process(pid)
            self._process.cpu_percent(None)  # the first call only sets the baseline
        except psutil.NoSuchProcess:  # ZombieProcess included
            self._process = None
            self._gone = True
        except psutil.AccessDenied as exc:
            self._error = f"access denied: {exc}"  # it exists; collect() says what it could not read

    @property
    def gone(self) -> bool:
        return self._gone

    def collect(self) -> ProcessSample:
        ts = self._wall_clock()
        with self._lock:
            if self._gone:
                return ProcessSample(pid=self.pid, ts=ts, gone=True)
            if self._process is None:
                return ProcessSample(pid=self.pid, ts=ts, error=self._error)
            process = self._process
            try:
                with process.oneshot():
                    # is_running() compares the creation time too, so a reused pid counts as gone.
                    if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                        raise psutil.NoSuchProcess(self.pid)
                    memory = process.memory_info()
                    cpu_pct = process.cpu_percent(None)
                    threads = process.num_threads()
                    fds = self._num_fds(process)
            except psutil.NoSuchProcess:  # ZombieProcess included
                self._gone = True
                self._process = None
                return ProcessSample(pid=self.pid, ts=ts, gone=True)
            except psutil.AccessDenied as exc:
                return ProcessSample(pid=self.pid, ts=ts, error=f"access denied: {exc}")
        return ProcessSample(
            pid=self.pid,
            ts=ts,
            rss_bytes=int(memory.rss),
            vms_bytes=int(memory.vms),
            cpu_pct=float(cpu_pct),
            num_threads=int(threads),
            num_fds=fds,
        )

    @staticmethod
    def _num_fds(process: psutil.Process) -> int | None:
        num_fds = getattr(process, "num_fds", None)  # Unix only
        if num_fds is None:
            return None
        try:
            return int(num_fds())
        except psutil.AccessDenied:
            return None
