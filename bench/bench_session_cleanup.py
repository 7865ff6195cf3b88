"""Session cleanup at scale: N idle sessions (default 100,000) created on a real worker through its OpenAI API, then
expired in one run of the cleanup call the control plane's job makes; prints the time taken and the memory
returned (KV-cache bytes, and the worker's resident memory before and after).

    .venv/bin/python bench/bench_session_cleanup.py [--sessions 100000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.serve import free_port, wait_for  # noqa: E402

MiB = 2**20


async def create_sessions(url: str, key: str, count: int, concurrency: int) -> float:
    headers = {"Authorization": f"Bearer {key}"}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)

    async def client(http: httpx.AsyncClient):
        while not queue.empty():
            i = queue.get_nowait()
            body = {
                "model": "demo",
                "messages": [{"role": "user", "content": "Return the value"}],
                "max_tokens": 1,
                "session_id": f"bench-{i}",
            }
            response = await http.post(url + "/v1/chat/completions", json=body, headers=headers)
            assert response.status_code == 200, response.text

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    port, control, key = free_port(), secrets.token_hex(16), secrets.token_hex(16)
    env = {**os.environ, "WORKER_CONTROL_TOKEN": control, "WORKER_API_KEY": key, "OMP_WAIT_POLICY": "PASSIVE"}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inference",
            "serve",
            "--port",
            str(port),
            "--model-id",
            "demo",
            "--device",
            "cpu",
            "--max-batch-size",
            "64",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    control_headers = {"Authorization": f"Bearer {control}"}
    try:
        with httpx.Client(base_url=url, headers=control_headers, timeout=600) as http:
            wait_for(lambda: http.get("/health").json().get("model"), timeout=300, what="the worker")
            http.patch(
                "/control/config",
                json={
                    "max_sessions": args.sessions * 2,
                    "max_session_kv_bytes": 64 * 2**30,
                    "session_timeout_s": 86400,
                    "session_sweep_interval_s": 3600,
                },
            ).raise_for_status()
            before = http.get("/control/stats").json()
            created_s = asyncio.run(create_sessions(url, key, args.sessions, args.concurrency))
            full = http.get("/control/stats").json()
            time.sleep(2)
            started = time.perf_counter()
            result = http.post("/control/sessions/expire", json={"idle_s": 1}).json()
            expire_s = time.perf_counter() - started
            after = http.get("/control/stats").json()
    finally:
        worker.terminate()
        worker.wait(60)
    print(f"\nSession cleanup: {args.sessions:,} idle sessions on the demo model (CPU)")
    print(f"  created through the API in {created_s:.0f} s ({args.sessions / created_s:,.0f} sessions/s)")
    print(
        f"  worker RSS: {before['rss_bytes'] / MiB:,.0f} MiB before, {full['rss_bytes'] / MiB:,.0f} MiB with the "
        f"sessions ({full['sessions']:,} sessions, KV cache {full['kv_cache_bytes'] / MiB:,.0f} MiB)"
    )
    print(
        f"  one cleanup run: expired {result['expired']:,} sessions in {expire_s:.2f} s, freed "
        f"{result['freed_bytes'] / MiB:,.0f} MiB of KV cache"
    )
    print(
        f"  worker RSS after: {after['rss_bytes'] / MiB:,.0f} MiB ({after['sessions']} sessions left); "
        f"{(after['rss_bytes'] - before['rss_bytes']) / max(before['rss_bytes'], 1):+.1%} against before"
    )


if __name__ == "__main__":
    main()
