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


def human(n: int | None) -> str:
    if n is None:
        return "an unknown amount"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def disk_full_message(root: Path, free_at_start: int | None) -> str:
    """What a write that filled the disk under store ``root`` tells its user."""
    began = f"; it needed more than the {human(free_at_start)} free when it began" if free_at_start else ""
    return (f"the disk holding the store {root} is full ({human(free_bytes(root))} free now){began}. Nothing this "
            f"write made was kept and the store is as it was: free space on that disk (`hquery gc` removes what the "
            f"store no longer needs) or move the store to a larger one, then run the command again")
