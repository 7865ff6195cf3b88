"""Gateway figures, measured side by side in one run against a real control plane and worker (demo model, CPU):

1. response cache: hit vs miss latency for the same prompt (misses use distinct seeds, so each is generated);
2. gateway overhead: p50 through the gateway vs straight to the worker, concurrency 1 and 16, interleaved rounds;
3. with --fresh-clone: seconds from `make run` on a fresh clone to the first answer from the gateway.

  .venv/bin/python bench/bench_gateway.py [--rounds 5] [--fresh-clone]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.serve import ControlPlane, free_port, wait_for  # noqa: E402


def p50(values: list[float]) -> float:
    return statistics.median(values)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed_post(http: httpx.Client, url: str, body: dict, headers: dict) -> float:
    started = time.perf_counter()
    response = http.post(url, json=body, headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed


def cache_figures(plane: ControlPlane, n: int) -> dict:
    headers = {"Authorization": f"Bearer {plane.token}"}
    body = {"model": "demo", "prompt": "Return the", "max_tokens": 32, "temperature": 0}
    with httpx.Client(timeout=120) as http:
        url = plane.url + "/v1/completions"
        misses = [timed_post(http, url, {**body, "seed": 1000 + i}, headers) for i in range(n)]
        timed_post(http, url, body, headers)  # fill the cache
        hits = [timed_post(http, url, body, headers) for _ in range(n * 5)]
    return {"miss_p50": p50(misses), "hit_p50": p50(hits), "hit_p99": pct(hits, 0.99), "n": n}


def worker_target(plane: ControlPlane) -> tuple[str, dict]:
    with plane.api() as api:
        deployment = api.get("/api/v1/deployments/").json()["results"][0]
    key = hmac.new(
        plane.environment()["SECRET_KEY"].encode(), f"lcp-worker:api:{deployment['id']}".encode(), hashlib.sha256
    ).hexdigest()
    return deployment["worker_url"], {"Authorization": f"Bearer {key}"}


def run_load(url: str, headers: dict, concurrency: int, per_client: int) -> list[float]:
    body = {"model": "demo", "prompt": "If", "max_tokens": 1, "temperature": 0.8}
    latencies: list[float] = []
    lock = threading.Lock()

    def client():
        with httpx.Client(timeout=120) as http:
            for _ in range(per_client):
                elapsed = timed_post(http, url, body, headers)
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def overhead_figures(plane: ControlPlane, rounds: int) -> dict:
    worker_url, worker_headers = worker_target(plane)
    gateway_headers = {"Authorization": f"Bearer {plane.token}", "Cache-Control": "no-cache"}
    results = {}
    for concurrency, per_client in ((1, 40), (16, 8)):
        direct, gateway = [], []
        for _ in range(rounds):  # interleaved, so both see the same machine load
            direct += run_load(worker_url + "/v1/completions", worker_headers, concurrency, per_client)
            gateway += run_load(plane.url + "/v1/completions", gateway_headers, concurrency, per_client)
        results[concurrency] = {"direct_p50": p50(direct), "gateway_p50": p50(gateway), "n": len(direct)}
    return results


def fresh_clone_figure() -> float:
    """`make run` on a fresh clone (new virtualenv), to the first answer through the gateway."""
    workdir = Path(tempfile.mkdtemp(prefix="lcp-fresh-", dir=ROOT.parent))
    clone = workdir / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    port = free_port()
    env = {**os.environ, "ADMIN_PASSWORD": "fresh-clone-pass-1", "VAR_DIR": str(clone / "var")}
    started = time.perf_counter()
    make = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=clone,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        python = clone / ".venv" / "bin" / "python"
        wait_for(lambda: python.exists(), timeout=900, interval=1, what="the virtualenv")
        token = None

        def answered():
            nonlocal token
            if token is None:
                out = subprocess.run(
                    [str(python), "manage.py", "create_api_token", "admin"],
                    cwd=clone,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if out.returncode != 0:
                    return False
                token = out.stdout.strip().splitlines()[-1]
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/completions",
                timeout=60,
                headers={"Authorization": f"Bearer {token}"},
                json={"model": "demo", "prompt": "Return the", "max_tokens": 8},
            )
            return response.status_code == 200

        wait_for(answered, timeout=1800, interval=1, what="the first answer")
        return time.perf_counter() - started
    finally:
        os.killpg(make.pid, 2)
        make.wait(60)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache-n", type=int, default=20)
    parser.add_argument("--fresh-clone", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plane = ControlPlane(Path(tmp), env={"GATEWAY_TOKEN_CACHE_S": "5", "GATEWAY_ROUTE_CACHE_S": "1"})
        plane.prepare()
        plane.start()
        try:
            cache = cache_figures(plane, args.cache_n)
            overhead = overhead_figures(plane, args.rounds)
        finally:
            plane.stop()
    print("\nResponse cache, same prompt (max_tokens 32), through the gateway")
    print(f"  miss p50 {cache['miss_p50'] * 1000:9.1f} ms   ({cache['n']} requests, each generated)")
    print(f"  hit  p50 {cache['hit_p50'] * 1000:9.1f} ms   p99 {cache['hit_p99'] * 1000:.1f} ms")
    print(f"  hit is {cache['miss_p50'] / cache['hit_p50']:.0f}x faster at p50 (target: at least 20x)")
    print("\nGateway overhead (max_tokens 1, cache bypassed), interleaved rounds")
    print(f"  {'concurrency':>11} {'direct p50':>12} {'gateway p50':>12} {'added':>9}   requests each")
    for concurrency, row in overhead.items():
        added = (row["gateway_p50"] - row["direct_p50"]) * 1000
        print(
            f"  {concurrency:>11} {row['direct_p50'] * 1000:>10.1f}ms {row['gateway_p50'] * 1000:>10.1f}ms "
            f"{added:>7.1f}ms   {row['n']}  (target: at most 5 ms added)"
        )
    if args.fresh_clone:
        seconds = fresh_clone_figure()
        print(f"\nFrom `make run` on a fresh clone to the first answer from the gateway: {seconds:.0f} s")


if __name__ == "__main__":
    main()
