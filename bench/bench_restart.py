"""Requests failed while a worker restarts under steady load: the rolling restart (a new worker beside the old one,
traffic switched when it is ready, the old one drained) against the stop-start that a deployment gets when a second
copy does not fit (forced here by shrinking the node's recorded memory). One real control plane (`manage.py serve`
with the demo model), 4 clients sending requests back to back through the gateway, the restart asked over REST.

    .venv/bin/python bench/bench_restart.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.serve import ControlPlane, Load, pid_alive, wait_for  # noqa: E402

CLIENTS = 4


def one_restart(plane: ControlPlane, api: httpx.Client, deployment_id: int) -> dict:
    url = f"/api/v1/deployments/{deployment_id}/"
    old_pid = api.get(url).json()["worker_pid"]
    with Load(plane, clients=CLIENTS) as load:
        t0 = time.monotonic()
        mode = api.post(url + "restart/").json()["restart"]["mode"]
        wait_for(
            lambda: (
                api.get(url).json()["worker_pid"] not in (old_pid, None)
                and api.get(url).json()["status"] == "running"
                and not pid_alive(old_pid)
            ),
            timeout=600,
            what="the restart to finish",
        )
        switched = time.monotonic() - t0
        time.sleep(3)
        codes = load.since(t0)
    failed = [c for c in codes if c != 200]
    return {"mode": mode, "requests": len(codes), "failed": len(failed), "codes": Counter(failed), "seconds": switched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plane = ControlPlane(Path(tmp), env={"GATEWAY_ROUTE_CACHE_S": "1", "WORKER_HEALTH_INTERVAL_S": "2"})
        plane.prepare()
        plane.start()
        try:
            with plane.api() as api:
                deployment = api.get("/api/v1/deployments/").json()["results"][0]
                wait_for(lambda: api.get(f"/api/v1/deployments/{deployment['id']}/").json()["status"] == "running")
                rolling = [one_restart(plane, api, deployment["id"]) for _ in range(args.rounds)]
                node = api.get(f"/api/v1/nodes/{deployment['node']}/").json()
                # room for one copy of the demo model with the headroom, not for two
                api.patch(f"/api/v1/nodes/{node['id']}/", json={"memory_bytes": 700 * 2**20}).raise_for_status()
                stop_start = [one_restart(plane, api, deployment["id"]) for _ in range(args.rounds)]
        finally:
            plane.stop()
    print(
        f"\nRequests failed during a worker restart, {CLIENTS} clients back to back (max_tokens 8), through the gateway"
    )
    print(f"  {'mode':<11} {'round':>5} {'requests':>9} {'failed':>7}  {'codes':<22} {'restart took':>12}")
    for rows in (rolling, stop_start):
        for i, row in enumerate(rows, 1):
            codes = ", ".join(f"{c or 'conn'}×{n}" for c, n in sorted(row["codes"].items())) or "-"
            print(
                f"  {row['mode']:<11} {i:>5} {row['requests']:>9} {row['failed']:>7}  {codes:<22} {row['seconds']:>10.1f} s"
            )
    for name, rows in (("rolling", rolling), ("stop_start", stop_start)):
        failed = [r["failed"] for r in rows]
        print(
            f"  {name}: failed median {statistics.median(failed):g} (range {min(failed)}-{max(failed)}); target for rolling: 0"
        )


if __name__ == "__main__":
    main()
