"""The background services that live in the control-plane process beside the ASGI server.

``manage.py serve`` runs uvicorn inside its own asyncio loop and starts every registered service around it: the
supervisor (worker processes), the metrics collector, the scheduler. Services that push to browsers must do so on
this loop (the in-memory channel layer is not thread-safe); ``call_in_loop`` hands work to it from any thread.

A service is any object with ``name``, ``start(loop)`` and ``stop()``; register a factory with ``register``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

logger = logging.getLogger(__name__)

__all__ = ["Service", "ServiceThread", "call_in_loop", "main_loop", "register", "registered", "start_all", "stop_all"]


class Service(Protocol):
    name: str

    def start(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def stop(self) -> None: ...


_factories: list[tuple[int, Callable[[], Service | None]]] = []
_loop: asyncio.AbstractEventLoop | None = None


def register(factory: Callable[[], Service | None], *, order: int = 100) -> Callable[[], Service | None]:
    """Add a service factory (it may return None when the service is off in this configuration)."""
    _factories.append((order, factory))
    return factory


def registered() -> list[Callable[[], Service | None]]:
    return [factory for _, factory in sorted(_factories, key=lambda item: item[0])]


def main_loop() -> asyncio.AbstractEventLoop | None:
    """The loop the ASGI server runs on, when this process runs ``serve``."""
    return _loop


def call_in_loop(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run ``coroutine`` on the server's loop: directly when already on it, scheduled when called from a thread.
    Outside ``serve`` (tests, commands) it runs to completion here."""
    loop = _loop
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is not None and not loop.is_closed():
        if running is loop:
            loop.create_task(coroutine)
        else:
            asyncio.run_coroutine_threadsafe(coroutine, loop)
        return
    if running is not None:
        running.create_task(coroutine)
        return
    asyncio.run(coroutine)


def start_all(loop: asyncio.AbstractEventLoop) -> list[Service]:
    global _loop
    _loop = loop
    started: list[Service] = []
    for factory in registered():
        service = factory()
        if service is None:
            continue
        logger.info("starting %s", service.name)
        service.start(loop)
        started.append(service)
    return started


def stop_all(services: list[Service]) -> None:
    global _loop
    for service in reversed(services):
        try:
            logger.info("stopping %s", service.name)
            service.stop()
        except Exception:
            logger.exception("stopping %s failed", service.name)
    _loop = None


class ServiceThread:
    """A service made of steps run in a thread (in the manner of healthchecks' sendalerts): ``step()`` returns
    True when it did work; the loop sleeps ``idle_s`` when it did not, wakes early on ``wake()``, and stops on
    ``stop()``. A failing step is logged and never ends the loop. Tests call ``step()`` directly."""

    name = "service"
    idle_s = 1.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.on_stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        from django.db import close_old_connections

        while not self._stop.is_set():
            try:
                did_work = self.step()
            except Exception:
                logger.exception("%s: step failed", self.name)
                did_work = False
            finally:
                close_old_connections()
            if not did_work:
                self._wake.wait(self.idle_s)
                self._wake.clear()

    def step(self) -> bool:
        raise NotImplementedError

    def on_stop(self) -> None:
        """Clean up after the loop has ended (stop child processes, flush buffers)."""
