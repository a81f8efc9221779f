"""Kill points: where the reliability tests stop a process mid-commit."""

from __future__ import annotations

import collections
import os
import signal


KILL_POINTS = ("init-built", "slide-staged", "commit-lance", "commit-artifacts", "commit-catalog")
"""Where ``$HQUERY_KILL_AT`` can stop a process, in commit order: the store built but not yet in place; a Ray
ingest's slide recorded in its stage; Lance written, nothing moved; artifacts moved, the catalog not yet
committed; the catalog committed, nothing cleaned."""
_kills_seen: collections.Counter = collections.Counter()


def kill_point(name: str) -> None:
    """SIGKILL this process if ``$HQUERY_KILL_AT`` is ``name`` (or ``name:N`` and this is the N-th time here).

    A test hook: the reliability tests kill each command at each step of its
    commit and check that the store reads as before (or as after) and a re-run works.
    """
    wanted = os.environ.get("HQUERY_KILL_AT")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    _kills_seen[name] += 1
    if point == name and _kills_seen[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
