"""Fixtures: a tiny randomly initialised MoE checkpoint, engines on it, and a real uvicorn server."""

from __future__ import annotations

import os

# Let OpenMP threads sleep between torch ops (as `serve` does) so in-process HTTP servers are not starved.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inference.engine import Engine
from inference.protocol import WorkerConfig
from tests.inference.helpers import LiveServer, make_checkpoint, start_server, stop_server


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-moe")


@pytest.fixture(scope="session")
def other_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt2") / "tiny-moe-v2", seed=1)


@pytest.fixture
def make_engine(tiny_checkpoint: Path) -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make(path: Path | None = None, precision: str = "fp32", **config: object) -> Engine:
        engine = Engine(WorkerConfig(**config)).start()
        engines.append(engine)
        engine.load(str(path or tiny_checkpoint), precision, "cpu")
        return engine

    yield make
    for engine in engines:
        engine.stop()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


@pytest.fixture
def live(engine: Engine) -> Iterator[LiveServer]:
    server = start_server(engine)
    yield server
    stop_server(server)
