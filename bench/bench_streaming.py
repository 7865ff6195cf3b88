"""Live-metrics websocket fan-out (``/ws/metrics/``): N signed-in clients on one real control plane, one sample per
collector tick (METRICS_INTERVAL_S, 1 s), for a few minutes, on the in-memory channel layer and on Redis.

For each layer a real ``manage.py serve`` is started (tests.e2e.serve.ControlPlane: its own var directory, database
and Redis prefixes; the demo worker starts too, so the ticks carry worker series). The benchmark signs in as admin,
opens --clients websockets to the local node's group from one asyncio process, and records for --seconds:

- messages: every tick published in the window (its ``published`` time, stamped when ``group_send`` runs, falls in
  the window) counts as expected by every client; expected = the server's seq range seen in the window, so a tick
  that no client got, a gap in one client's seqs or a client that stopped receiving all count as lost. Samples that
  arrive within --grace seconds after the window still count;
- dropped: the consumer's own ``dropped`` counter (oldest samples evicted from a slow client's buffer), last value;
- delivery latency: receive wall time minus ``published`` (one machine, one clock), over every sample of every
  client; "since collection" uses the tick's ``ts`` (collection time) instead, so it adds the collector's own work;
- server cost: the serve process's CPU (utime + stime from /proc) and ``lcp_metrics_collector_tick_cpu_seconds``
  from ``/metrics`` (the collector's last tick, polled; it does not include the publish), before the clients
  connect and during the fan-out.

Targets (from the issue): 0 messages lost, delivery p99 under 250 ms. The clients, the server, the worker and Redis
share this machine's CPUs, so on a small host the client side adds to the latency it measures.

  .venv/bin/python bench/bench_streaming.py [--clients 100] [--seconds 300] [--layers memory,redis]

Exits non-zero only when a control plane or the clients cannot be set up, not on missed targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.serve import ControlPlane  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN = ("admin", "e2e-admin-password-1")  # ControlPlane sets ADMIN_PASSWORD; ensure_admin creates "admin"
TARGET_P99_MS = 250.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class SetupError(RuntimeError):
    pass


# --- the server side ------------------------------------------------------------------------------------------------
def sign_in(plane: ControlPlane) -> str:
    """The admin's ``sessionid`` cookie, through the login form."""
    with httpx.Client(base_url=plane.url, timeout=30) as http:
        page = http.get("/accounts/login/")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if page.status_code != 200 or match is None:
            raise SetupError(f"login page: HTTP {page.status_code}, no csrfmiddlewaretoken")
        response = http.post(
            "/accounts/login/",
            data={"username": ADMIN[0], "password": ADMIN[1], "csrfmiddlewaretoken": match.group(1)},
            headers={"Referer": plane.url + "/accounts/login/"},
        )
        session = http.cookies.get("sessionid")
        if response.status_code not in (200, 302) or not session:
            raise SetupError(f"login failed: HTTP {response.status_code}, no sessionid cookie")
        return session


def process_cpu_s(pid: int) -> float:
    """utime + stime of one process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tick_cpu_s(plane: ControlPlane) -> float | None:
    try:
        text = httpx.get(plane.url + "/metrics", headers={"Authorization": f"Bearer {plane.token}"}, timeout=10).text
    except httpx.HTTPError:
        return None
    match = re.search(r"^lcp_metrics_collector_tick_cpu_seconds\s+(\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


async def poll_server(plane: ControlPlane, seconds: float, every: float = 2.0) -> dict:
    """Server CPU share over ``seconds`` and the collector's tick CPU, polled every ``every`` seconds."""
    pid = plane.process.pid
    cpu0, wall0 = process_cpu_s(pid), time.monotonic()
    ticks: list[float] = []
    deadline = wall0 + seconds
    while deadline - time.monotonic() > 0:
        value = await asyncio.to_thread(tick_cpu_s, plane)
        if value is not None:
            ticks.append(value)
        await asyncio.sleep(min(every, max(0.0, deadline - time.monotonic())))
    cpu1, wall1 = process_cpu_s(pid), time.monotonic()
    return {"cpu_share": (cpu1 - cpu0) / (wall1 - wall0), "tick_cpu": ticks}


# --- the clients ----------------------------------------------------------------------------------------------------
@dataclass
class Client:
    index: int
    hello: bool = False
    samples: list[tuple[int, float, float, float]] = field(default_factory=list)  # (seq, received, published, ts)
    dropped: int = 0
    closed: str = ""  # why the connection ended before we closed it
    recording: bool = False


async def run_client(
    client: Client, url: str, origin: str, session: str, connected: asyncio.Event, stop: asyncio.Event
):
    async with websockets.connect(
        url,
        origin=origin,
        additional_headers={"Cookie": f"sessionid={session}"},
        max_size=None,
        open_timeout=120,
        ping_interval=None,  # nothing but the server's samples on the wire
    ) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 120))
        if first.get("type") != "hello":
            raise SetupError(f"client {client.index}: first message is {first.get('type')!r}, not hello")
        client.hello = True
        connected.set()
        receiver = asyncio.ensure_future(_receive(client, ws))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([receiver, stopped], return_when=asyncio.FIRST_COMPLETED)
        if receiver.done():
            stopped.cancel()
            exc = receiver.exception()
            client.closed = f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
        else:
            receiver.cancel()


async def _receive(client: Client, ws) -> None:
    async for raw in ws:
        received = time.time()
        if not client.recording:
            continue
        message = json.loads(raw)
        if message.get("type") != "sample":
            continue
        client.samples.append((message["seq"], received, message["published"], message["ts"]))
        client.dropped = message.get("dropped", 0)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def fan_out(plane: ControlPlane, clients_n: int, seconds: float, grace: float, baseline_s: float) -> dict:
    session = sign_in(plane)
    idle = await poll_server(plane, baseline_s)
    url = plane.url.replace("http://", "ws://") + "/ws/metrics/"
    stop = asyncio.Event()
    clients = [Client(i) for i in range(clients_n)]
    events = [asyncio.Event() for _ in clients]
    started = time.monotonic()
    tasks = [
        asyncio.ensure_future(run_client(c, url, plane.url, session, e, stop))
        for c, e in zip(clients, events, strict=True)
    ]
    deadline = started + 180
    while not all(e.is_set() for e in events) and time.monotonic() < deadline:
        failed = [t for t in tasks if t.done()]
        if failed:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            exc = failed[0].exception()
            raise SetupError(f"a client failed to connect: {exc!r}" if exc else "a client closed before its hello")
        await asyncio.sleep(0.1)
    if not all(e.is_set() for e in events):
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise SetupError(f"only {sum(e.is_set() for e in events)} of {clients_n} clients connected in 180 s")
    connect_s = time.monotonic() - started

    await asyncio.sleep(1.0)  # let the first tick after the last connect pass
    for c in clients:
        c.recording = True
    window_start = time.time()
    busy = await poll_server(plane, seconds)
    window_end = time.time()
    await asyncio.sleep(grace)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return summarise(clients, window_start, window_end, connect_s, idle, busy)


def summarise(clients: list[Client], start: float, end: float, connect_s: float, idle: dict, busy: dict) -> dict:
    in_window = [[s for s in c.samples if start <= s[2] <= end] for c in clients]
    seqs = {s[0] for samples in in_window for s in samples}
    first, last = (min(seqs), max(seqs)) if seqs else (0, -1)
    per_client = last - first + 1
    received = sum(len({s[0] for s in samples}) for samples in in_window)
    expected = per_client * len(clients)
    latencies = [(s[1] - s[2]) * 1000 for samples in in_window for s in samples]
    since_ts = [(s[1] - s[3]) * 1000 for samples in in_window for s in samples]
    short = [
        c.index for c, samples in zip(clients, in_window, strict=True) if len({s[0] for s in samples}) < per_client
    ]
    return {
        "clients": len(clients),
        "seconds": end - start,
        "connect_s": connect_s,
        "ticks": per_client,
        "expected": expected,
        "received": received,
        "lost": expected - received,
        "clients_short": len(short),
        "never_got_all": sorted(set(range(first, last + 1)) - {s[0] for s in in_window[short[0]]})[:10]
        if short
        else [],
        "closed": [f"client {c.index}: {c.closed}" for c in clients if c.closed],
        "dropped": sum(c.dropped for c in clients),
        "dropped_max": max((c.dropped for c in clients), default=0),
        "duplicates": sum(len(samples) - len({s[0] for s in samples}) for samples in in_window),
        "p50": pct(latencies, 0.50),
        "p95": pct(latencies, 0.95),
        "p99": pct(latencies, 0.99),
        "max": max(latencies, default=float("nan")),
        "ts_p50": pct(since_ts, 0.50),
        "ts_p99": pct(since_ts, 0.99),
        "idle": idle,
        "busy": busy,
    }


# --- one layer ------------------------------------------------------------------------------------------------------
def run_layer(layer: str, args) -> dict:
    env = {"REDIS_URL": REDIS_URL} if layer == "redis" else {}
    with tempfile.TemporaryDirectory(prefix=f"bench-streaming-{layer}-") as tmp:
        plane = ControlPlane(Path(tmp), env=env)
        try:
            try:
                plane.prepare()
                plane.start()
            except Exception as exc:
                tail = plane.log()[-3000:] if (Path(tmp) / "serve.log").exists() else ""
                raise SetupError(f"{layer}: the control plane did not start: {exc}\n{tail}") from exc
            print(
                f"[{layer}] control plane up at {plane.url}; {args.clients} clients for {args.seconds:g} s", flush=True
            )
            return asyncio.run(fan_out(plane, args.clients, args.seconds, args.grace, args.baseline))
        finally:
            plane.stop()
            plane.drop()


def mean_ms(values: list[float]) -> str:
    return f"{statistics.fmean(values) * 1000:.2f}" if values else "n/a"


def report(results: dict[str, dict]) -> None:
    layers = list(results)
    rows = [
        ("clients", lambda r: f"{r['clients']}"),
        ("window, s", lambda r: f"{r['seconds']:.0f}"),
        ("connect all clients, s", lambda r: f"{r['connect_s']:.1f}"),
        ("ticks in window (per client)", lambda r: f"{r['ticks']}"),
        ("messages expected", lambda r: f"{r['expected']}"),
        ("messages received", lambda r: f"{r['received']}"),
        ("messages lost", lambda r: f"{r['lost']}"),
        ("clients missing any", lambda r: f"{r['clients_short']}"),
        ("dropped by server (sum / max)", lambda r: f"{r['dropped']} / {r['dropped_max']}"),
        ("duplicates", lambda r: f"{r['duplicates']}"),
        ("connections closed early", lambda r: f"{len(r['closed'])}"),
        ("delivery p50, ms", lambda r: f"{r['p50']:.1f}"),
        ("delivery p95, ms", lambda r: f"{r['p95']:.1f}"),
        ("delivery p99, ms", lambda r: f"{r['p99']:.1f}"),
        ("delivery max, ms", lambda r: f"{r['max']:.1f}"),
        ("since collection p50 / p99, ms", lambda r: f"{r['ts_p50']:.1f} / {r['ts_p99']:.1f}"),
        ("serve CPU, idle / fan-out", lambda r: f"{r['idle']['cpu_share']:.0%} / {r['busy']['cpu_share']:.0%}"),
        (
            "collector tick CPU, idle / fan-out, ms",
            lambda r: f"{mean_ms(r['idle']['tick_cpu'])} / {mean_ms(r['busy']['tick_cpu'])}",
        ),
        ("target: 0 lost", lambda r: "met" if r["lost"] == 0 else "MISSED"),
        (f"target: p99 < {TARGET_P99_MS:g} ms", lambda r: "met" if r["p99"] < TARGET_P99_MS else "MISSED"),
    ]
    width = max(len(label) for label, _ in rows)
    print()
    print(f"{'':<{width}} | " + " | ".join(f"{layer:>16}" for layer in layers))
    print("-" * width + "-+-" + "-+-".join("-" * 16 for _ in layers))
    for label, cell in rows:
        print(f"{label:<{width}} | " + " | ".join(f"{cell(results[layer]):>16}" for layer in layers))
    for layer in layers:
        r = results[layer]
        if r["never_got_all"]:
            print(f"[{layer}] first client with gaps missed seqs {r['never_got_all']}")
        for line in r["closed"][:5]:
            print(f"[{layer}] {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=300, help="measurement window per layer")
    parser.add_argument("--layers", default="memory,redis", help="comma-separated: memory, redis")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds after the window for late samples")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds of server CPU before clients connect")
    args = parser.parse_args()
    layers = [layer.strip() for layer in args.layers.split(",") if layer.strip()]
    unknown = set(layers) - {"memory", "redis"}
    if unknown or not layers:
        parser.error(f"unknown layers: {', '.join(sorted(unknown)) or '(none)'}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, websockets {websockets.__version__}")
    results = {}
    try:
        for layer in layers:
            results[layer] = run_layer(layer, args)
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        if results:
            report(results)
        return 1
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
