"""Helpers shared by the inference tests (fixtures live in conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import uvicorn

from inference.batcher import Failed, Finished, GenerationRequest
from inference.bridge import make_request
from inference.checkpoint import save_checkpoint
from inference.config import MoEConfig
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
    # Sharper output distributions than the 0.02-std init, so greedy decoding has clear winners, and only ASCII
    # bytes can win (zero rows for the rest), so output text re-encodes to the same token ids.
    with torch.no_grad():
        model.lm_head.weight.mul_(50)
        model.lm_head.weight[128:] = 0
    return save_checkpoint(model, path)


def wait_until(condition: Callable[[], Any], timeout: float = WAIT_S, what: str = "condition") -> None:
    """Poll ``condition`` until true (no fixed sleeps as synchronisation; generous deadline)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


@dataclass
class Collector:
    """A sink that records a sequence's events."""

    events: list[Any] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    finished_at: float | None = None

    def __call__(self, event: Any) -> None:
        self.events.append(event)
        if isinstance(event, Finished | Failed):
            self.finished_at = time.monotonic()
            self.done.set()

    def result(self, timeout: float = WAIT_S) -> Finished:
        assert self.done.wait(timeout), "request did not finish"
        last = self.events[-1]
        if isinstance(last, Failed):
            raise last.error
        return last

    @property
    def first_text(self) -> bool:
        return bool(self.events)


def submit(engine: Engine, prompt: str, **params: Any) -> tuple[Any, Collector]:
    """Submit one request; returns (sequence, collector)."""
    sink = Collector()
    session_id = params.pop("session_id", None)
    req: GenerationRequest = make_request(engine, prompt, session_id, **params)
    return engine.submit(req, sink), sink


class Stall:
    """Blocks the engine at the start of its next step that has work, until released (``with Stall(engine):``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self) -> None:
        self.entered.set()
        assert self.released.wait(WAIT_S), "stall was never released"

    def __enter__(self) -> Stall:
        self.engine.hooks.before_step = self
        return self

    def release(self) -> None:
        self.released.set()

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.engine.hooks.before_step = None


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
    """A real uvicorn server on a free port, in a thread."""
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
