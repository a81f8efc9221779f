"""The exclusive file lock every writer, refresh and stage holds."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from hquery.errors import StoreError

LOG = logging.getLogger("hquery")


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, busy: str, wait: float = 0.0) -> Iterator[None]:
    """An exclusive ``flock`` on ``lock_path``, waited for up to ``wait`` seconds (a note on stderr says so);
    the holder's pid is written in it for the messages."""
    fh = open(lock_path, "a+")
    deadline, pause, noted = time.monotonic() + wait, 0.05, False
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            left = deadline - time.monotonic()
            if left <= 0:
                fh.close()
                raise StoreError(f"another hquery process ({holder}) {busy}; wait for it to finish"
                                 + (f" (waited {wait:.0f}s)" if wait else "")) from None
            if not noted:
                LOG.warning("waiting for another hquery process (%s) that %s", holder, busy)
                noted = True
            time.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    try:
        yield
    finally:
        fh.seek(0)
        fh.truncate()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
