"""Host, process and local-node readings through the real psutil."""

import os
import socket
import subprocess
import sys
import time
from collections import namedtuple

import psutil
import pytest

from controlplane.monitoring.collectors import HostCollector, ProcessCollector, cpu_busy_pct, local_node_info

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def test_host_readings_are_plausible_and_in_bytes():
    collector = HostCollector(wall_clock=lambda: 123.0)
    sample = collector.collect()
    memory = psutil.virtual_memory()
    assert sample.ts == 123.0
    assert sample.mem_total_bytes == memory.total
    assert 0 < sample.mem_available_bytes <= sample.mem_total_bytes
    assert sample.mem_used_bytes == sample.mem_total_bytes - sample.mem_available_bytes
    assert sample.swap_used_bytes <= sample.swap_total_bytes
    assert sample.cpu_count >= 1
    assert sample.load1 is not None and sample.load1 >= 0


def test_host_cpu_percent_covers_the_time_since_the_previous_reading():
    collector = HostCollector()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # keep one CPU busy
        pass
    sample = collector.collect()
    assert sample.cpu_pct is not None and 0.0 < sample.cpu_pct <= 100.0


def test_host_cpu_percent_is_not_disturbed_by_other_psutil_callers():
    collector = HostCollector()
    time.sleep(0.05)
    psutil.cpu_percent(None)  # module-wide state in psutil; ours is separate
    sample = collector.collect()
    assert sample.cpu_pct is not None


def test_busy_share_is_computed_like_psutil_does_it():
    before = Times(100, 0, 50, 800, 50, 0, 0, 0, 10, 0)
    after = Times(160, 0, 70, 880, 60, 0, 0, 0, 30, 0)
    # busy: (user + system) delta 80 minus nothing; idle + iowait delta 90; guest is inside user, so not added again
    assert cpu_busy_pct(before, after) == pytest.approx(100 * 80 / 170)
    assert cpu_busy_pct(before, before) is None


def test_local_node_info_gives_hostname_cores_and_memory():
    node = local_node_info()
    assert node.hostname == socket.gethostname()
    assert node.cpu_cores == psutil.cpu_count(logical=True)
    assert node.memory_bytes == psutil.virtual_memory().total
    assert node.to_dict() == {"hostname": node.hostname, "cpu_cores": node.cpu_cores, "memory_bytes": node.memory_bytes}


def test_a_process_is_read_with_memory_cpu_threads_and_fds():
    collector = ProcessCollector(os.getpid(), wall_clock=lambda: 5.0)
    sample = collector.collect()
    assert sample.pid == os.getpid() and sample.ts == 5.0
    assert not sample.gone and sample.error is None
    assert sample.rss_bytes > 0 and sample.vms_bytes >= sample.rss_bytes
    assert sample.cpu_pct is not None and sample.cpu_pct >= 0
    assert sample.num_threads >= 1
    assert sample.num_fds is None or sample.num_fds > 0


def test_a_process_that_exits_is_reported_gone_without_an_exception():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        collector = ProcessCollector(child.pid)
        assert not collector.collect().gone
    finally:
        child.kill()
        child.wait()
    sample = collector.collect()
    assert sample.gone and sample.rss_bytes is None
    assert collector.gone
    assert sample.series() == {}


def test_a_zombie_process_counts_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        collector = ProcessCollector(child.pid)
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert collector.collect().gone
    finally:
        child.wait()


def test_a_pid_that_does_not_exist_is_gone_from_the_start():
    pid = 2**22 + 12345  # above Linux's pid_max, so never a live process
    collector = ProcessCollector(pid)
    assert collector.gone
    assert collector.collect().gone


def test_a_process_that_is_gone_stays_gone_even_if_its_pid_is_reused(monkeypatch):
    collector = ProcessCollector(os.getpid())
    monkeypatch.setattr(psutil.Process, "is_running", lambda self: False)  # what psutil says after pid reuse
    assert collector.collect().gone
    monkeypatch.undo()
    assert collector.collect().gone
