"""A full disk: told apart from other write errors, and said in terms a user can act on."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

NO_SPACE = "No space left on device"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a full disk: ``ENOSPC`` from Python, or Lance's and
    DuckDB's own errors, which carry the operating system's message."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or NO_SPACE in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(path: Path) -> int | None:
    """Bytes free on the disk holding ``path`` (its nearest existing folder), or ``None`` if it cannot say."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def disk_full_message(root: Path, free_at_start: int | None) -> str:
    """What a write that filled the disk under store ``root`` tells its user."""
    free = free_bytes(root)
    began = f"; it needed more than the {human_bytes(free_at_start)} free when it began" if free_at_start else ""
    now = f"{human_bytes(free)} free now" if free is not None else "free space unknown"
    return (f"the disk holding the store {root} is full ({now}){began}. Nothing this "
            f"write made was kept and the store is as it was: free space on that disk (`hquery gc` removes what the "
            f"store no longer needs) or move the store to a larger one, then run the command again")
