"""Stages: a resumable write's finished work, kept between runs where no reader looks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from hquery.store.ids import content_digest
from hquery.store.locks import exclusive_lock


@dataclasses.dataclass(frozen=True)
class StageInfo:
    """A stage on disk (``hquery gc`` removes stale ones)."""

    key: str
    bytes: int
    changed_at: datetime
    """UTC."""


class Stage:
    """A resumable write's finished work, kept between runs where no reader looks.

    A long ingest encodes slide after slide into its stage (``STORE/staging/KEY``):
    each slide's Lance fragments (:attr:`fragments_uri`, written by whichever worker
    encoded it) and a record of them. Killed and run again with the same key, it
    finds the finished slides in :meth:`records`; its final transaction links the
    staged fragments into the tables (:meth:`Transaction.append_fragments`), and
    the stage goes once the catalog has committed. Committed tables never see a
    staged row before then, and the next writer's recovery leaves stages alone.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def key(self) -> str:
        return self.root.name

    @property
    def fragments_uri(self) -> str:
        """Where workers write fragments (a Lance dataset path that is never committed)."""
        return str(self.root / "fragments.lance")

    @property
    def data_dir(self) -> Path:
        return self.root / "fragments.lance" / "data"

    @contextlib.contextmanager
    def lock(self, wait: float = 0.0) -> Iterator[Stage]:
        """Held by the one run that stages here; a second run with the same key is refused while it is held."""
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.root / ".lock", f"is staging into {self.root}", wait=wait):
            yield self

    def records(self) -> dict[str, dict]:
        """The finished units' records by name (a slide's sample id)."""
        folder = self.root / "done"
        out = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # a record whose write was cut short: that unit is simply done again
            out[record["name"]] = record
        return out

    def put_record(self, name: str, record: dict) -> None:
        """Record unit ``name`` as finished (atomically: a kill leaves the old record or the new one)."""
        folder = self.root / "done"
        folder.mkdir(parents=True, exist_ok=True)
        digest = content_digest(name)
        partial = folder / f".{digest}.{uuid.uuid4().hex[:6]}.tmp"
        partial.write_text(json.dumps({**record, "name": name}))
        os.replace(partial, folder / f"{digest}.json")

    def has_files(self, fragments: Sequence[str]) -> bool:
        """Whether every data file of these staged fragments (JSON) is on disk."""
        for fragment in fragments:
            for data_file in json.loads(fragment)["files"]:
                if not (self.data_dir / data_file["path"]).is_file():
                    return False
        return True
