"""A write: changes staged against a store and applied together, the catalog's commit the one commit point."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from hquery.errors import StoreError
from hquery.names import Pointer
from hquery.store.kills import kill_point
from hquery.store.layout import ARTIFACTS_DIR
from hquery.store.stage import Stage
from hquery.store.statements import queries
from hquery.store.tables import LanceTable

if TYPE_CHECKING:
    from hquery.store.catalog import Store


class Transaction:
    """Changes staged against a store, applied together by :meth:`Store.transaction`."""

    def __init__(self, store: Store):
        self.store = store
        self.id = uuid.uuid4().hex[:12]
        self._statements: list[tuple[str, list[Any], dict[str, pa.Table]]] = []
        self._lance: dict[str, LanceTable] = {}
        self._lance_before: dict[str, LanceTable | None] = {}
        self._artifacts: list[tuple[Path, Path]] = []
        self.lance_versions: dict[str, int] = {}
        self._lock: contextlib.ExitStack | None = None
        self._delete_after: list[Path] = []

    def lock(self) -> None:
        """Take the write lock now (a write takes it at its first Lance or artifact write anyway)."""
        self._take_write_lock()

    def _take_write_lock(self) -> None:
        """Before the first Lance or artifact write: the write lock, then undo any interrupted write."""
        if self._lock is None:
            lock = contextlib.ExitStack()
            lock.enter_context(self.store._write_lock())
            self._lock = lock
            self.store._recover()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def execute(self, name: str, params: Sequence[Any] = (), **staged: pa.Table) -> None:
        """Stage a named statement; ``staged`` Arrow tables are visible to it by name."""
        if name not in queries():
            raise KeyError(f"no statement named {name!r} in sql/queries.sql")
        self._statements.append((name, list(params), staged))

    def insert(self, table: str, rows: pa.Table) -> None:
        """Stage ``INSERT INTO table`` of ``rows`` (columns matched by name)."""
        if rows.num_rows:
            self.execute(f"insert_{table}", **{f"staged_{table}": rows})

    def put_setting(self, key: str, value: str) -> None:
        self.execute("put_setting", [key, value])

    def move_pointer(self, pointer: Pointer | str, version: str) -> None:
        """Make ``version`` the current one of ``pointer`` when this transaction commits."""
        self.put_setting(str(pointer), version)

    def write_lance(
        self,
        name: str,
        data: pa.Table | pa.RecordBatchReader,
        *,
        kind: str,
        encoder: str | None = None,
        mode: str = "append",
    ) -> int:
        """Append to (or, with ``mode='overwrite'``, replace) the Lance table ``name``.

        ``data`` may be a streaming reader, so memory stays bounded however many
        rows it yields. Returns the new Lance version, committed with the catalog.
        """
        import lance

        self._take_write_lock()
        path = self.store.lance_path(name)
        if name not in self._lance_before:
            self._lance_before[name] = self.store.lance_tables().get(name)
        exists = name in self._lance or self._lance_before[name] is not None
        if not exists and path.exists():
            shutil.rmtree(path)
        dataset = lance.write_dataset(data, str(path), mode=mode if exists else "create")
        self._lance[name] = LanceTable(name, kind, encoder, dataset.version, dataset.count_rows())
        self.lance_versions[name] = dataset.version
        return dataset.version

    def append_fragments(self, name: str, fragments: Sequence[str], schema: pa.Schema, stage: Stage, *,
                         kind: str, encoder: str | None = None) -> int:
        """Append Lance fragments written into ``stage`` (by workers, before this transaction) to the table ``name``.

        ``fragments`` are ``FragmentMetadata`` as JSON, in the order their rows
        belong. Their data files are linked into the table and committed as one new
        Lance version, which the catalog records at commit like any other write;
        the stage is deleted once the catalog has committed. Returns the new version.
        """
        import lance
        from lance.fragment import FragmentMetadata

        self._take_write_lock()
        path = self.store.lance_path(name)
        if name not in self._lance_before:
            self._lance_before[name] = self.store.lance_tables().get(name)
        current = self._lance.get(name) or self._lance_before[name]
        if current is None and path.exists():
            shutil.rmtree(path)
        metadata = [FragmentMetadata.from_json(f) for f in fragments]
        (path / "data").mkdir(parents=True, exist_ok=True)
        for fragment in metadata:
            for data_file in fragment.files:
                source, target = stage.data_dir / data_file.path, path / "data" / data_file.path
                if not source.is_file():
                    raise StoreError(f"staged fragment file {source} is missing; run the write again")
                if not target.exists():
                    try:
                        os.link(source, target)
                    except OSError:
                        shutil.copyfile(source, target)
        if current is None:
            dataset = lance.LanceDataset.commit(str(path), lance.LanceOperation.Overwrite(schema, metadata))
        else:
            dataset = lance.LanceDataset.commit(str(path), lance.LanceOperation.Append(metadata),
                                                read_version=current.version)
        self._lance[name] = LanceTable(name, kind, encoder, dataset.version, dataset.count_rows())
        self.lance_versions[name] = dataset.version
        self._delete_after.append(stage.root)
        return dataset.version

    def compact_lance(self, name: str) -> int:
        """Rewrite the Lance table ``name``'s fragments into as few as Lance's defaults allow; returns the new
        version, committed with the catalog. The version before stays readable until :meth:`Store.cleanup_lance`."""
        import lance

        self._take_write_lock()
        table = self._lance.get(name) or self.store.lance_tables()[name]
        self._lance_before.setdefault(name, self.store.lance_tables().get(name))
        lance.dataset(str(self.store.lance_path(name)), version=table.version).optimize.compact_files()
        dataset = lance.dataset(str(self.store.lance_path(name)))
        self._lance[name] = LanceTable(name, table.kind, table.encoder, dataset.version, dataset.count_rows())
        self.lance_versions[name] = dataset.version
        return dataset.version

    def drop_lance(self, name: str) -> None:
        """Drop the Lance table ``name`` from the catalog; its files go once the catalog has committed."""
        self._take_write_lock()
        self.execute("delete_lance_table", [name])
        self._delete_after.append(self.store.lance_path(name))

    def delete_artifact(self, relative: str) -> None:
        """Delete the artifact folder ``relative`` once the catalog has committed (nothing live may name it)."""
        self._take_write_lock()
        self._delete_after.append(self.store.artifact_path(relative))

    def stage_artifact(self, relative: str) -> Path:
        """A fresh directory to write an artifact into; it moves to ``artifacts/relative`` on commit."""
        self._take_write_lock()
        staging = self.store.root / ARTIFACTS_DIR / f".staging-{self.id}" / relative
        staging.mkdir(parents=True, exist_ok=False)
        self._artifacts.append((staging, self.store.artifact_path(relative)))
        return staging

    def _commit(self) -> None:
        self._kill_point("commit-lance")
        for _, final in self._artifacts:
            if not final.exists():
                continue
            relative = final.relative_to(self.store.root / ARTIFACTS_DIR).as_posix()
            if self.store.query("artifact_referenced", [relative])[0].n:
                # versions are immutable: what a committed version serves is never deleted or rewritten
                raise StoreError(f"artifact {relative} belongs to a committed version; a version is written "
                                 "once, so this build needs a new version id")
            shutil.rmtree(final)  # left by a commit killed before the catalog took it: nothing refers to it
        for staging, final in self._artifacts:
            final.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(final)
        self._kill_point("commit-artifacts")
        with self.store.connect(write=True) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for name, params, staged in self._statements:
                    for key, table in staged.items():
                        con.register(key, table)
                    con.execute(queries()[name], params)
                    for key in staged:
                        con.unregister(key)
                for table in self._lance.values():
                    con.execute(
                        queries()["put_lance_table"],
                        [table.name, table.kind, table.encoder, table.version, table.n_rows],
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        self._kill_point("commit-catalog")
        # a kill from here on leaves only files nothing refers to: the next writer or `hquery gc` removes them
        for path in self._delete_after:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.store.root / ARTIFACTS_DIR / f".staging-{self.id}", ignore_errors=True)

    def _kill_point(self, name: str) -> None:
        if self._lock is not None:  # a writer's commit; a catalog-only one is one DuckDB commit
            kill_point(name)

    def _abort(self) -> None:
        if self._lock is None:  # catalog-only: nothing was written
            return
        shutil.rmtree(self.store.root / ARTIFACTS_DIR / f".staging-{self.id}", ignore_errors=True)
        try:
            self.store._recover()
        except Exception:  # the next writer recovers too; never mask the original error
            pass
