"""Time from the start of a leak on a real worker to the alert e-mail and to the restarted worker, with the leak
detector's defaults (the calibrated LeakConfig: 600 s as its shortest window, checked every 60 s, confirmed twice).

One real control plane (`manage.py serve` with the demo model, workers started with fault injection), an SMTP
server on loopback, the deployment set to `leak_action: restart`; the worker is made to leak host memory through
`POST /control/faults`. Takes about 10-15 minutes.

    .venv/bin/python bench/bench_leak_e2e.py [--mb-per-min 10] [--timeout 1500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.serve import ControlPlane  # noqa: E402
from tests.e2e.test_leak_e2e import leak_to_alert_and_restart  # noqa: E402
from tests.smtp import Mailbox, free_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb-per-min", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds to wait for the e-mail, the restart")
    args = parser.parse_args()
    box = Mailbox()
    box.port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    with tempfile.TemporaryDirectory(prefix="bench-leak-") as var:
        plane = ControlPlane(
            Path(var),
            env={
                "SCHEDULER_IN_PROCESS": "1",
                "EMAIL_URL": f"smtp://127.0.0.1:{box.port}",
                "ONCALL_EMAILS": "oncall@example.org",
                "DEFAULT_FROM_EMAIL": "llm@example.org",
                "WORKER_FAULT_INJECTION": "1",
            },
        )
        plane.prepare()
        plane.start()
        try:
            result = leak_to_alert_and_restart(plane, box, args.mb_per_min, args.timeout)
        finally:
            plane.stop()
            plane.drop()
            controller.stop()
    print(
        f"leak {args.mb_per_min:g} MB/min, default detector: alert e-mail {result['to_mail_s']:.0f} s, worker "
        f"restarted {result['to_restart_s']:.0f} s after the leak started (pid {result['old_pid']} -> "
        f"{result['new_pid']}); subject: {result['subject']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
