"""Fixtures: a tiny randomly initialised MoE checkpoint, an engine on it, and a real uvicorn server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import uvicorn

from inference.checkpoint import save_checkpoint
from inference.config import MoEConfig, WorkerConfig
from inference.engine import Engine
from inference.models.moe import MoEModel
from inference.server import create_app

TINY = MoEConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=32, n_experts=4, top_k=2, max_seq_len=128)
DEMO = Path(__file__).resolve().parents[2] / "inference" / "demo" / "moe-demo-v1"
CONTROL_TOKEN = "test-control-token"
WAIT_S = 60.0


def make_checkpoint(path: Path, cfg: MoEConfig = TINY, seed: int = 0) -> Path:
    """Save a randomly initialised model of ``cfg``."""
    model = MoEModel(cfg)
    model.init_weights(torch.Generator().manual_seed(seed))
    # Sharper output distributions than 0.02-std init, so greedy decoding has clear winners.
    with torch.no_grad():
        model.lm_head.weight.mul_(50)
    return save_checkpoint(model, path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-moe")


@pytest.fixture
def make_engine(tiny_checkpoint: Path) -> Iterator:
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
def engine(make_engine) -> Engine:
    return make_engine()


def wait_until(condition, timeout: float = WAIT_S, what: str = "condition") -> None:
    """Poll ``condition`` until true (no fixed sleeps as synchronisation; generous deadline)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@dataclass
class LiveServer:
    url: str
    engine: Engine
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def control_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {CONTROL_TOKEN}"}


def start_server(engine: Engine, api_key: str | None = None) -> LiveServer:
    app = create_app(engine, CONTROL_TOKEN, api_key)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    return LiveServer(f"http://127.0.0.1:{port}", engine, server, thread)


def stop_server(live: LiveServer) -> None:
    live.server.should_exit = True
    live.thread.join(WAIT_S)


@pytest.fixture
def live(engine: Engine) -> Iterator[LiveServer]:
    server = start_server(engine)
    yield server
    stop_server(server)
