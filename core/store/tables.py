"""What the catalog records of each Lance table, and what of it may go."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LanceTable:
    """A Lance table as the catalog records it."""

    name: str
    kind: str
    encoder: str | None
    version: int
    n_rows: int


@dataclasses.dataclass(frozen=True)
class LanceGarbage:
    """Superseded versions of one Lance table that may go, and the bytes of the data files only they use."""

    name: str
    versions: list[int]
    bytes: int
