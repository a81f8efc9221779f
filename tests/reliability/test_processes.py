"""Processes hquery starts go when their parent goes."""

import os
import signal
import subprocess
import sys
import time

import pytest

POOL = """
import os, sys, time
from hquery.parallel import worker_pool, submit
with worker_pool(2) as pool:
    futures = [submit(pool, time.sleep, 120) for _ in range(2)]
    time.sleep(1.5)
    print(" ".join(str(p) for p in pool._processes), flush=True)
    time.sleep(120)
"""


@pytest.mark.slow
def test_fold_workers_exit_when_their_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", POOL], stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(p) for p in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "workers outlived their killed parent"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone but for its exit status
        return fh.read().split()[2] != "Z"
