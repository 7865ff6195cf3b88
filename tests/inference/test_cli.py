"""The command line: ``serve`` runs a real worker process that shuts down cleanly on SIGTERM; ``info``/``verify``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.inference.helpers import WAIT_S, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=5).json().get("model") is not None
    except httpx.HTTPError:
        return False


def _serve(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "inference", "serve", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_serve_answers_and_frees_its_port_on_sigterm(tiny_checkpoint: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve("--port", str(port), "--model", str(tiny_checkpoint), "--device", "cpu", "--max-batch-size", "8",
                  env={"WORKER_CONTROL_TOKEN": "tok", "WORKER_API_KEY": "key"})  # fmt: skip
    try:
        wait_until(lambda: _ready(url), timeout=WAIT_S * 2, what="the worker to load its model")
        body = {"model": "tiny-moe", "prompt": "Hello", "max_tokens": 4}
        assert httpx.post(url + "/v1/completions", json=body, timeout=30).status_code == 401
        ok = httpx.post(url + "/v1/completions", json=body, headers={"Authorization": "Bearer key"}, timeout=30)
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4
        config = httpx.get(url + "/control/config", headers={"Authorization": "Bearer tok"}).json()
        assert config["max_batch_size"] == 8
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the port is free again


def test_serve_prints_a_generated_control_token_once(tiny_checkpoint: Path) -> None:
    port = _free_port()
    env = {k: "" for k in ("WORKER_CONTROL_TOKEN", "WORKER_API_KEY")}
    proc = _serve("--port", str(port), "--model", str(tiny_checkpoint), "--device", "cpu", env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("control token (generated, shown once): ")
        token = line.split(": ", 1)[1].strip()
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(url), timeout=WAIT_S * 2, what="the worker to start")
        assert httpx.get(url + "/control/status", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(url + "/control/status").status_code == 401
        proc.send_signal(signal.SIGINT)
        assert proc.wait(WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_info_and_verify(tiny_checkpoint: Path, tmp_path: Path) -> None:
    run = [sys.executable, "-m", "inference"]
    info = json.loads(subprocess.run([*run, "info", str(tiny_checkpoint)], cwd=ROOT, capture_output=True,
                                     text=True, check=True).stdout)  # fmt: skip
    assert info["format"] == "moe" and len(info["sha256"]) == 64 and info["parameters"] > 0
    ok = subprocess.run([*run, "verify", str(tiny_checkpoint)], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    bad = Path(shutil.copytree(tiny_checkpoint, tmp_path / "bad"))
    (bad / "config.json").write_text("{}")
    out = subprocess.run([*run, "verify", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and "config.json: sha256" in out.stderr
