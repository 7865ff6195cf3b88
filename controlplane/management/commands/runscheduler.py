"""Run the scheduler in its own process (scale-out: one beside the ASGI servers; more than one stand by).

The loop is the same ``Scheduler`` that ``serve`` runs in-process: its steps run in a service thread while the main
thread waits for SIGTERM or SIGINT (only the main thread receives signals); then it stops cleanly, recording runs
that did not finish in SCHEDULER_SHUTDOWN_WAIT_S as interrupted and releasing the lock for a standby.
"""

from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from controlplane.jobs import registry as jobs
from controlplane.jobs.scheduler import Scheduler


class Command(BaseCommand):
    help = "Run the scheduled jobs (only the scheduler holding the lock acts; others stand by). Stop with SIGTERM."

    def handle(self, *args, **options):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        scheduler = Scheduler()
        scheduler.start()
        self.stdout.write(
            f"Scheduler {scheduler.id}: {len(jobs.JOBS)} jobs, lease {settings.SCHEDULER_LEASE_S:g} s "
            f"renewed every {settings.SCHEDULER_RENEW_S:g} s. Stop with Ctrl-C or SIGTERM."
        )
        self.stdout.flush()
        while not stop.wait(1.0):
            pass
        self.stdout.write("Stopping: waiting for running jobs, then releasing the lock.")
        scheduler.stop()
        self.stdout.write(f"Scheduler {scheduler.id} stopped.")
