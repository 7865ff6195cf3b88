"""Workload drivers for bench_worker.py: engine-level and HTTP-level request generators and a table printer."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import torch

from inference.batcher import Failed, Finished
from inference.bridge import make_request
from inference.checkpoint import save_checkpoint
from inference.config import MoEConfig
from inference.engine import Engine
from inference.models.moe import MoEModel
from inference.protocol import WorkerConfig

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "inference" / "demo" / "moe-demo-v1"
PROMPTS = ["Return the ", "This module provides ", "The default value is ", "Raise ValueError if "]


@dataclass
class Sink:
    done: threading.Event = field(default_factory=threading.Event)
    final: Any = None
    at: float = 0.0

    def __call__(self, event: Any) -> None:
        if isinstance(event, Finished | Failed):
            self.final, self.at = event, time.perf_counter()
            self.done.set()


@dataclass
class Run:
    """What a workload produced."""

    requests: int
    tokens: int
    seconds: float
    latencies: list[float]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)


def engine_on(path: Path, precision: str = "fp32", **config: Any) -> Engine:
    engine = Engine(WorkerConfig(**{"max_queue": 100_000, **config})).start()
    engine.load(str(path), precision, "cpu")
    return engine


def _finish(sinks: list[Sink], starts: list[float], t0: float) -> Run:
    for s in sinks:
        assert s.done.wait(600), "request did not finish"
        if isinstance(s.final, Failed):
            raise s.final.error
    tokens = sum(s.final.usage["completion_tokens"] for s in sinks)
    latencies = [s.at - st for s, st in zip(sinks, starts, strict=True)]
    return Run(len(sinks), tokens, max(s.at for s in sinks) - t0, latencies)


def concurrent(engine: Engine, max_tokens: list[int], session_prefix: str | None = None, **params: Any) -> Run:
    """Submit every request at once, wait for all."""
    sinks, starts, t0 = [], [], time.perf_counter()
    for i, n in enumerate(max_tokens):
        sid = f"{session_prefix}{i}" if session_prefix else None
        req = make_request(engine, PROMPTS[i % len(PROMPTS)], sid, max_tokens=n, ignore_eos=True, **params)
        sinks.append(Sink())
        starts.append(time.perf_counter())
        engine.submit(req, sinks[-1])
    return _finish(sinks, starts, t0)


def sequential(engine: Engine, max_tokens: list[int], **params: Any) -> Run:
    """One request at a time."""
    sinks, starts, t0 = [], [], time.perf_counter()
    for i, n in enumerate(max_tokens):
        sinks.append(Sink())
        starts.append(time.perf_counter())
        engine.submit(
            make_request(engine, PROMPTS[i % len(PROMPTS)], max_tokens=n, ignore_eos=True, **params), sinks[-1]
        )
        sinks[-1].done.wait(600)
    return _finish(sinks, starts, t0)


def wide_context_model(path: Path, max_seq_len: int = 512) -> Path:
    """The demo architecture with random weights and a longer context (for max_tokens up to 256 + a prompt)."""
    cfg = MoEConfig(max_seq_len=max_seq_len)
    model = MoEModel(cfg)
    model.init_weights(torch.Generator().manual_seed(0))
    return save_checkpoint(model, path)


# -- HTTP ------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkerProcess:
    """``python -m inference serve`` in a subprocess (the real CLI)."""

    token = "bench-token"

    def __init__(self, model: Path = DEMO) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "WORKER_CONTROL_TOKEN": self.token}
        cmd = [sys.executable, "-m", "inference", "serve", "--port", str(self.port), "--model", str(model)]
        self.proc = subprocess.Popen(
            [*cmd, "--device", "cpu", "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=2).json().get("model"):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("worker did not start")

    def configure(self, **changes: Any) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        httpx.patch(self.url + "/control/config", json=changes, headers=headers).raise_for_status()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


async def _one(client: httpx.AsyncClient, model: str, prompt: str, n: int) -> tuple[int, float]:
    body = {"model": model, "prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True}
    t = time.perf_counter()
    resp = await client.post("/v1/completions", json=body)
    resp.raise_for_status()
    return resp.json()["usage"]["completion_tokens"], time.perf_counter() - t


async def _http(url: str, model: str, max_tokens: list[int], parallel: bool) -> Run:
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=64)) as client:
        t0 = time.perf_counter()
        jobs = [_one(client, model, PROMPTS[i % len(PROMPTS)], n) for i, n in enumerate(max_tokens)]
        if parallel:
            results = await asyncio.gather(*jobs)
        else:
            results = [await job for job in jobs]
        seconds = time.perf_counter() - t0
    return Run(len(results), sum(r[0] for r in results), seconds, [r[1] for r in results])


def http_run(url: str, model: str, max_tokens: list[int], parallel: bool) -> Run:
    return asyncio.run(_http(url, model, max_tokens, parallel))


# -- printing --------------------------------------------------------------------------------------------------------


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [header, *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n== {title}")
    for r in cells:
        print(
            "  "
            + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "MISS"
