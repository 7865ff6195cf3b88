"""The gateway's database calls run in asgiref's worker thread, outside Django's request cycle, so nothing closes a
connection the database server dropped (a PostgreSQL restart, ``pg_terminate_backend``, a failover): every later
call in that thread would fail. ``reconnecting`` runs a call again once on a fresh connection when the first try
finds the connection gone."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def reconnecting(func: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(func)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block:
                raise
            logger.warning("database connection lost (%s); reconnecting once", exc)
            connection.close()
            return func(*args, **kwargs)

    return call
