"""The store handle: catalog connections and queries, users' SQL, Lance tables, artifacts, stages, the write lock
and recovery from interrupted writes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from hquery import __version__
from hquery.errors import InputError, NotReadyError, StoreError
from hquery.names import Pointer
from hquery.store.disk import disk_full_message, free_bytes, is_disk_full
from hquery.store.ids import utcnow
from hquery.store.kills import kill_point
from hquery.store.layout import (ARTIFACTS_DIR, CATALOG, LANCE_DIR, LOCK_FILE, MARKER, REFRESH_LOCK_FILE,
                                 STAGING_DIR, STORE_FORMAT, directory_size)
from hquery.store.locks import exclusive_lock
from hquery.store.stage import Stage, StageInfo
from hquery.store.statements import (check_single_query, migrations, named_rows, queries, schema_version_latest,
                                     sql_identifier, views)
from hquery.store.tables import LanceGarbage, LanceTable
from hquery.store.transaction import Transaction

_LOCK_WAIT_S = 30.0
DEFAULT_LOCK_WAIT_S = 600.0
"""How long a writer waits for another writer's lock before it gives up (``$HQUERY_LOCK_WAIT`` overrides)."""
LOG = logging.getLogger("hquery")
SQL_TIMEOUT_S = 60.0
"""How long a user's query may run (``hquery sql --timeout``): a reader holds up every writer's commit."""
SQL_MEMORY_LIMIT = "2GB"
"""How much memory a user's query may use (``hquery sql --memory-limit``)."""
MEMORY_LIMIT = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class StoreSummary:
    """What ``hquery status`` shows: counts, cohorts, encoders and committed Lance tables."""

    store: str
    size_bytes: int
    counts: dict[str, int]
    cohorts: list[dict]
    encoders: list[dict]
    lance_tables: dict[str, dict]
    pointers: dict[str, str | None]
    reclaimable: dict[str, int] | None = None
    """Bytes ``hquery gc`` would free now, by kind (:func:`hquery.gc.store_status` fills it)."""
    stages: list[StageInfo] = dataclasses.field(default_factory=list)
    """Interrupted resumable ingests' stages (:class:`Stage`)."""


class Store:
    """An hquery store directory. Create with :meth:`init`, open with :meth:`open`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._writing = False
        self._session: duckdb.DuckDBPyConnection | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def init(cls, root: str | Path) -> Store:
        """Create a store at ``root`` (or open it if it is one already)."""
        root = Path(root)
        if (root / MARKER).exists():
            return cls.open(root)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise StoreError(
                f"{root} exists and is not an empty directory; a new store needs a new or empty directory"
            )
        # built whole in a hidden sibling, then renamed into place: a kill leaves no half-made store at root
        root.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_builds(root)
        building = root.parent / f".{root.name}.init-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            building.mkdir()
            (building / LANCE_DIR).mkdir()
            (building / ARTIFACTS_DIR).mkdir()
            partial = cls(building)
            with partial._write_lock():
                partial._migrate()
                marker = {"format": STORE_FORMAT, "created_by": __version__, "created_at": utcnow().isoformat()}
                (building / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            kill_point("init-built")
            os.rename(building, root)
        except OSError as exc:
            if (root / MARKER).exists():  # another process made it first
                return cls.open(root)
            raise StoreError(f"cannot create a store at {root}: {exc}") from exc
        finally:
            shutil.rmtree(building, ignore_errors=True)
        return cls(root)

    @staticmethod
    def is_store(root: str | Path) -> bool:
        """Whether ``root`` holds an hquery store (its marker file)."""
        return (Path(root) / MARKER).exists()

    @classmethod
    def open(cls, root: str | Path) -> Store:
        """Open an existing store, migrating its catalog if this hquery is newer."""
        root = Path(root)
        if not root.exists():
            raise NotReadyError(f"no hquery store at {root}; create one there first", needs="init", store=str(root))
        marker = root / MARKER
        if not marker.exists():
            raise StoreError(
                f"{root} is not an hquery store (no {MARKER}); open a directory that was made as a store"
            )
        try:
            info = json.loads(marker.read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"{marker} is corrupt: {exc}") from exc
        if info.get("format") != STORE_FORMAT:
            raise StoreError(f"{marker} does not describe an hquery store (format={info.get('format')!r})")
        store = cls(root)
        current = store.schema_version()
        latest = schema_version_latest()
        if current > latest:
            raise StoreError(
                f"{root} has catalog schema version {current}, newer than this hquery ({__version__}, "
                f"schema {latest}); upgrade hquery"
            )
        if current < latest:
            with store._write_lock():
                store._migrate()
        return store

    def _migrate(self, upto: int | None = None) -> None:
        """Apply pending migrations (up to ``upto``), then re-create the views, in one transaction."""
        with self.connect(write=True) as con:
            con.execute(queries()["create_schema_version"])
            current = con.execute(queries()["schema_version"]).fetchall()[0][0]
            pending = [(v, ddl) for v, ddl in migrations() if current < v <= (upto or v)]
            if not pending:
                return
            con.execute("BEGIN TRANSACTION")
            for version, ddl in pending:
                con.execute(ddl)
                con.execute(queries()["record_schema_version"], [version])
            if upto is None:
                con.execute(views())
            con.execute("COMMIT")

    def schema_version(self) -> int:
        with self.connect() as con:
            tables = {r.table_name for r in named_rows(con.execute("SELECT table_name FROM information_schema.tables"))}
            if "schema_version" not in tables:
                return 0
            return con.execute(queries()["schema_version"]).fetchall()[0][0]

    # ------------------------------------------------------------------ catalog
    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG

    @contextlib.contextmanager
    def connect(self, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived catalog connection; read-only unless this process holds the write lock.

        DuckDB lets one process write or many read a database file, so connections
        are held only as long as a statement needs them. A reader retries a busy
        catalog for up to 30 s; a commit waits for readers (a long ``hquery sql``)
        as long as a writer waits for another writer (``$HQUERY_LOCK_WAIT``).
        """
        if self._session is not None and not (write or self._writing):
            yield self._session
            return
        read_only = not (write or self._writing) and self.catalog_path.exists()
        wait = _LOCK_WAIT_S if read_only else float(os.environ.get("HQUERY_LOCK_WAIT", DEFAULT_LOCK_WAIT_S))
        deadline, noted = time.monotonic() + wait, False
        while True:
            try:
                con = duckdb.connect(str(self.catalog_path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise StoreError(f"cannot open the catalog {self.catalog_path}: {exc}") from exc
                if not read_only and not noted and time.monotonic() > deadline - wait + 5:
                    LOG.warning("waiting for readers of %s to finish before committing", self.catalog_path)
                    noted = True
                time.sleep(0.2)
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Share one read-only catalog connection across the reads in this block.

        Opening the catalog costs milliseconds; a prompt that reads it a dozen
        times does so through one connection. Writers in other processes wait
        (up to 30 s) while the block runs, so keep it short and write nothing in it.
        """
        if self._session is not None:
            yield
            return
        with self.connect() as con:
            self._session = con
            try:
                yield
            finally:
                self._session = None

    def query(self, name: str, params: Sequence[Any] = (), **staged: pa.Table) -> list[tuple]:
        """Run the named statement from ``sql/queries.sql``; rows are named tuples (``row.sample_id``)."""
        with self.connect() as con:
            for key, table in staged.items():
                con.register(key, table)
            return named_rows(con.execute(queries()[name], list(params)))

    def query_arrow(self, name: str, params: Sequence[Any] = ()) -> pa.Table:
        with self.connect() as con:
            return con.sql(queries()[name], params=list(params) or None).to_arrow_table()

    def samples_where(self, predicate: str, *, library: bool = False) -> list[str]:
        """Slide samples (or, with ``library``, expression profiles) matching a user's SQL predicate over
        ``samples`` columns. The predicate runs where user SQL runs (:meth:`sandbox`): one expression, read-only."""
        statement = queries()["library_samples_where" if library else "slide_samples_where"].format(
            predicate=predicate)
        try:
            check_single_query(statement)
            with self.sandbox() as con:
                rows = named_rows(con.execute(statement))
        except (duckdb.Error, InputError) as exc:
            raise InputError(f"the sample filter {predicate!r} is not one valid SQL condition over samples: "
                             f"{exc}") from exc
        return [r.sample_id for r in rows]

    def setting(self, key: str) -> str | None:
        rows = self.query("get_setting", [key])
        return rows[0].value if rows else None

    def pointer(self, pointer: Pointer | str) -> str | None:
        """The current version a :class:`~hquery.names.Pointer` names, or ``None`` before the first one."""
        return self.setting(str(pointer))

    def summary(self) -> StoreSummary:
        """Counts, cohorts, encoders, committed Lance tables, current pointers and size on disk."""
        tables = self.lance_tables()
        return StoreSummary(
            store=str(self.root), size_bytes=self.size_bytes(),
            counts=self.query("store_counts")[0]._asdict(),
            cohorts=[r._asdict() for r in self.query("cohort_summary")],
            encoders=[r._asdict() for r in self.query("encoders")],
            lance_tables={t.name: {"version": t.version, "rows": t.n_rows} for t in tables.values()},
            pointers={p.value: self.pointer(p) for p in Pointer},
            stages=self.stages(),
        )

    def sql(self, text: str, *, timeout_s: float | None = SQL_TIMEOUT_S,
            memory_limit: str | None = SQL_MEMORY_LIMIT) -> pa.Table:
        """Run one read-only query of a user's over the catalog, its views and every Lance table.

        Each committed Lance table is visible by its name (``expression``,
        ``tile_embeddings__<encoder>`` ...), and the default encoders' tables also as
        ``tile_embeddings``, ``slide_embeddings`` and ``rna_embeddings``. The query
        runs in :meth:`sandbox`: one ``SELECT`` (or ``EXPLAIN``), no files read or
        written outside the store's tables, no settings changed. It is stopped after
        ``timeout_s`` seconds, since a reader holds the catalog and every writer's
        commit waits for it, and may use ``memory_limit`` (DuckDB's units: ``2GB``,
        ``512MiB``); ``None`` lifts either limit.
        """
        try:
            check_single_query(text)
            if memory_limit is not None and not MEMORY_LIMIT.fullmatch(memory_limit.strip()):
                raise InputError(f"memory limit {memory_limit!r} is not a size such as 2GB or 512MiB")
        except InputError as exc:
            raise StoreError(f"SQL error: {exc}") from exc
        with self.sandbox(lance=True, memory_limit=memory_limit) as con:
            timer = threading.Timer(timeout_s, con.interrupt) if timeout_s is not None else None
            if timer is not None:
                timer.daemon = True
                timer.start()
            try:
                relation = con.sql(text)
                return _as_text_where_arrow_cannot(relation).to_arrow_table() if relation is not None else pa.table({})
            except duckdb.InterruptException as exc:
                raise StoreError(f"SQL error: the query ran past its {timeout_s:g} s limit and was stopped (a "
                                 f"reader holds up every writer's commit); narrow it, or give it longer "
                                 f"(hquery sql --timeout)") from exc
            except duckdb.OutOfMemoryException as exc:
                raise StoreError(f"SQL error: the query needs more than its {memory_limit} memory limit; narrow "
                                 f"it, or raise the limit (hquery sql --memory-limit): {str(exc).splitlines()[0]}") from exc
            except duckdb.Error as exc:
                raise StoreError(f"SQL error: {exc}") from exc
            finally:
                if timer is not None:
                    timer.cancel()

    @contextlib.contextmanager
    def sandbox(self, lance: bool = False, memory_limit: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for a user's SQL: the catalog attached read-only, external access and settings locked.

        It can read the catalog (and, with ``lance``, every committed Lance table,
        handed in as Arrow datasets) and nothing else: no ``COPY``, ``EXPORT``,
        ``ATTACH``, ``INSTALL``/``LOAD``, file-reading functions or ``SET``; with
        ``memory_limit`` (checked by the caller), no more memory than that.
        """
        con = duckdb.connect(":memory:")
        # An attached catalog takes no file lock, so a read-only connection is held beside it for the query:
        # writers in other processes wait for it, as for any reader, instead of changing pages under it.
        with self.connect():
            try:
                con.execute(f"ATTACH '{self.catalog_path}' AS catalog (READ_ONLY)")
                con.execute("USE catalog")
                if lance:
                    for name, dataset in self.lance_relations().items():
                        con.register(name, dataset)
                if memory_limit is not None:  # and no spilling past it into temporary files
                    con.execute(f"SET memory_limit = '{memory_limit.strip()}'")
                    con.execute("SET temp_directory = ''")
                con.execute("SET enable_progress_bar = false")
                con.execute("SET enable_external_access = false")
                con.execute("SET lock_configuration = true")
                yield con
            finally:
                con.close()

    def lance_relations(self) -> dict[str, Any]:
        """Committed Lance datasets by SQL relation name (aliases for the default encoders included)."""
        out: dict[str, Any] = {}
        tables = self.lance_tables()
        for table in tables.values():
            out[table.name] = self.dataset(table.name)
        defaults = {"image": self.pointer(Pointer.IMAGE_ENCODER), "rna": self.pointer(Pointer.RNA_ENCODER)}
        for table in tables.values():
            prefix, _, encoder = table.name.partition("__")
            if encoder and encoder in (defaults["image"], defaults["rna"]) and prefix not in out:
                out[prefix] = out[table.name]
        return out

    # ------------------------------------------------------------------ lance
    def size_bytes(self) -> int:
        """The store's size on disk."""
        return directory_size(self.root)

    def data_bytes(self) -> int:
        """The size on disk of the Lance tables and artifacts (the store less its catalog)."""
        return directory_size(self.root / LANCE_DIR) + directory_size(self.root / ARTIFACTS_DIR)

    def lance_table_bytes(self, name: str) -> int:
        """The size on disk of Lance table ``name``, every version's files included."""
        return directory_size(self.lance_path(name))

    def lance_path(self, name: str) -> Path:
        return self.root / LANCE_DIR / f"{name}.lance"

    def lance_tables(self) -> dict[str, LanceTable]:
        return {r.name: LanceTable(*r) for r in self.query("lance_tables")}

    def dataset(self, name: str, version: int | None = None):
        """The Lance dataset ``name`` at its committed version (or an older ``version``), or ``None``."""
        import lance

        table = self.lance_tables().get(name)
        if table is None:
            return None
        if version is not None and version > table.version:
            raise StoreError(f"{name} has no committed version {version} (latest {table.version})")
        return lance.dataset(str(self.lance_path(name)), version=version or table.version)

    def lance_garbage(self, keep: dict[str, set[int]] | None = None,
                      superseded_before: datetime | None = None) -> list[LanceGarbage]:
        """For each committed Lance table, the versions before the committed one that may be deleted.

        A version stays if ``keep`` names it (a model's training snapshot) or if the
        one after it was made after ``superseded_before`` (local time), so a reader
        that opened it just before it was superseded can finish. ``bytes`` counts the
        data files no remaining version uses (rolled-back writes' leftovers included).
        """
        keep = keep or {}
        out = []
        for table in self.lance_tables().values():
            import lance  # here, not above: an empty store's status needs no Lance

            path = self.lance_path(table.name)
            stamps = {v["version"]: v["timestamp"] for v in lance.dataset(str(path), version=table.version).versions()}
            ordered = sorted(v for v in stamps if v <= table.version)
            drop = [v for v, after in zip(ordered, ordered[1:])
                    if v not in keep.get(table.name, set())
                    and (superseded_before is None or stamps[after] <= superseded_before)]
            used: set[str] = set()
            for version in set(ordered) - set(drop):
                for fragment in lance.dataset(str(path), version=version).get_fragments():
                    used.update(f.path for f in fragment.data_files())
            size = sum(f.stat().st_size for f in (path / "data").glob("*") if f.is_file() and f.name not in used)
            out.append(LanceGarbage(table.name, drop, size))
        return out

    def artifact_path(self, relative: str) -> Path:
        return self.root / ARTIFACTS_DIR / relative

    def artifact_folders(self) -> dict[str, int]:
        """Every artifact folder on disk (``models/VERSION``, ``indexes/VERSION`` ...) and its size in bytes."""
        root = self.root / ARTIFACTS_DIR
        return {f"{kind.name}/{folder.name}": directory_size(folder)
                for kind in sorted(root.iterdir()) if kind.is_dir() and not kind.name.startswith(".staging-")
                for folder in sorted(kind.iterdir()) if folder.is_dir()}

    def stage(self, key: str) -> Stage:
        """The stage ``key`` of a resumable write (made if new): see :class:`Stage`."""
        return Stage((self.root / STAGING_DIR / sql_identifier(key)).absolute())

    def stages(self) -> list[StageInfo]:
        """Every stage on disk: its key, size and when it last changed."""
        root = self.root / STAGING_DIR
        if not root.is_dir():
            return []
        out = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            files = [f for f in folder.rglob("*") if f.is_file()]
            changed = max((f.stat().st_mtime for f in files), default=folder.stat().st_mtime)
            out.append(StageInfo(folder.name, sum(f.stat().st_size for f in files),
                                 datetime.fromtimestamp(changed, timezone.utc).replace(tzinfo=None)))
        return out

    def remove_stage(self, key: str) -> bool:
        """Delete stage ``key`` unless a run holds it; whether it went."""
        stage = Stage(self.root / STAGING_DIR / key)
        try:
            with stage.lock(wait=0.0):
                shutil.rmtree(stage.root, ignore_errors=True)
        except StoreError:
            return False
        return True

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        """The one-writer lock; another writer holding it is waited for (``$HQUERY_LOCK_WAIT`` seconds, default
        600), with a note on stderr, before this one gives up."""
        wait = float(os.environ.get("HQUERY_LOCK_WAIT", DEFAULT_LOCK_WAIT_S))
        with exclusive_lock(self.root / LOCK_FILE, f"is writing to {self.root}", wait=wait):
            self._writing = True
            try:
                yield
            finally:
                self._writing = False

    def cleanup_lance(self, garbage: Sequence[LanceGarbage]) -> None:
        """Delete the listed superseded Lance versions and the data files nothing else uses. Call it inside a
        transaction that holds the write lock (:meth:`Transaction.lock`)."""
        import lance

        if not self._writing:
            raise RuntimeError("cleanup_lance needs the write lock: call it inside a locked transaction")
        for item in garbage:
            if item.versions:
                lance.dataset(str(self.lance_path(item.name))).cleanup_old_versions(
                    versions=list(item.versions), delete_unverified=True)

    @contextlib.contextmanager
    def refresh_lock(self) -> Iterator[None]:
        """Held for a whole ``hquery refresh``, so two never run on one store at once."""
        with exclusive_lock(self.root / REFRESH_LOCK_FILE,
                        f"is refreshing {self.root}; wait for it, or stop it (safe at any moment)"):
            yield

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Stage changes and commit them on success, all at once.

        Everything staged on the yielded :class:`Transaction` becomes visible at
        once when the block exits normally, and none of it does if it raises. A
        transaction that writes Lance tables or artifacts takes the write lock at
        its first such write and first undoes any earlier interrupted write; a
        catalog-only one (a prompt's record, an evaluation's results) never takes
        it, so it commits while a long ingest or training runs, waiting only the
        moment another commit holds the catalog.
        """
        if self._session is not None:
            raise RuntimeError("a write inside Store.reading(); close the reading block first")
        txn = Transaction(self)
        free_at_start = free_bytes(self.root)
        try:
            yield txn
            txn._commit()
        except BaseException as exc:
            txn._abort()
            if is_disk_full(exc) and not isinstance(exc, StoreError):
                raise StoreError(disk_full_message(self.root, free_at_start)) from exc
            raise
        finally:
            txn._release()

    def _recover(self) -> None:
        """Roll Lance tables back to their catalog-recorded versions and delete what uncommitted writes left.

        A version past the committed one (a write whose catalog commit never came)
        is restored away and its data files deleted; data files no version refers
        to (a write killed before Lance committed it) are deleted too. Committed
        versions, older ones included, stay readable. Runs under the write lock, so
        no other process is writing these tables.
        """
        import lance

        committed = self.lance_tables()
        lance_root = self.root / LANCE_DIR
        moved: list[tuple[LanceTable, int]] = []
        for path in sorted(lance_root.glob("*.lance")):
            name = path.name[: -len(".lance")]
            table = committed.get(name)
            if table is None:
                shutil.rmtree(path)
                continue
            latest = lance.dataset(str(path))
            uncommitted = [v["version"] for v in latest.versions() if v["version"] > table.version]
            if uncommitted:
                lance.dataset(str(path), version=table.version).restore()
                latest = lance.dataset(str(path))
                latest.cleanup_old_versions(versions=uncommitted, delete_unverified=True)
                moved.append((table, latest.version))
            latest.cleanup_old_versions(older_than=timedelta(days=365_000), delete_unverified=True)
        for staging in (self.root / ARTIFACTS_DIR).glob(".staging-*"):
            shutil.rmtree(staging, ignore_errors=True)
        if moved:
            with self.connect(write=True) as con:
                for table, version in moved:
                    con.execute(
                        queries()["put_lance_table"],
                        [table.name, table.kind, table.encoder, version, table.n_rows],
                    )


TEXT_TYPES = frozenset({"variant", "interval", "union", "bit", "time with time zone", "bignum", "hugeint", "uhugeint"})
"""DuckDB types whose Arrow form no reader of a result can use as such (a HUGEINT is a 38-digit decimal there, so
the largest lose digits): they come back as DuckDB's own text."""


def _as_text_where_arrow_cannot(relation: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    columns = [(name, kind.id in TEXT_TYPES) for name, kind in zip(relation.columns, relation.types)]
    if not any(text for _, text in columns):
        return relation
    quoted = ['"' + name.replace('"', '""') + '"' for name, _ in columns]
    return relation.project(", ".join(f"{q}::VARCHAR AS {q}" if text else q for q, (_, text) in zip(quoted, columns)))


def _remove_abandoned_builds(root: Path) -> None:
    """Delete hidden ``init`` build folders next to ``root`` whose process is gone (killed mid-init)."""
    for folder in root.parent.glob(f".{root.name}.init-*"):
        pid = folder.name.rpartition(".init-")[2].split("-")[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError):
            continue
