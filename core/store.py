"""The hquery store: one directory holding a DuckDB catalog and Lance tables.

This module is the only code that opens paths inside a store or runs SQL
(its statements live in :mod:`hquery.sql`). Everything else goes through
:class:`Store` and :class:`Transaction`.

Atomicity
---------
A write is a :class:`Transaction`. Lance appends happen first and each makes a
new Lance version; the DuckDB commit that records those versions in
``lance_tables`` is the single commit point. Readers open each Lance table at
the version the catalog records, so rows from a write that never committed (an
error, or a process killed mid-ingest) are invisible, and the next writer rolls
such tables back before it starts (:meth:`Store._recover`).

Layout::

    STORE/
      hquery-store.json     marker: format and creating version
      catalog.duckdb        the catalog (schema in sql/migrations)
      lance/NAME.lance      one Lance table per directory
      artifacts/VERSION/    encoder and model files
      staging/KEY/          a resumable write's finished work, invisible to readers (:class:`Stage`)
      .write.lock           held by the one process writing
      .refresh.lock         held by the one refresh running
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import functools
import json
import logging
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from hquery import __version__
from hquery.errors import InputError, NotReadyError, StoreError
from hquery.names import Pointer

MARKER = "hquery-store.json"
CATALOG = "catalog.duckdb"
LANCE_DIR = "lance"
ARTIFACTS_DIR = "artifacts"
STAGING_DIR = "staging"
LOCK_FILE = ".write.lock"
REFRESH_LOCK_FILE = ".refresh.lock"
STORE_FORMAT = "hquery-store"

_LOCK_WAIT_S = 30.0
DEFAULT_LOCK_WAIT_S = 600.0
"""How long a writer waits for another writer's lock before it gives up (``$HQUERY_LOCK_WAIT`` overrides)."""
LOG = logging.getLogger("hquery")


def default_store_path() -> Path:
    """``$HQUERY_STORE`` or ``./hquery-store``."""
    return Path(os.environ.get("HQUERY_STORE", "hquery-store"))


@functools.cache
def _queries() -> dict[str, str]:
    text = resources.files("hquery.sql").joinpath("queries.sql").read_text()
    out: dict[str, str] = {}
    for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        lines = [ln for ln in body.splitlines() if not ln.startswith("--")]
        out[name.strip()] = "\n".join(lines).strip()
    return out


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("hquery.sql").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        m = re.match(r"(\d+)_.*\.sql$", entry.name)
        if m:
            found.append((int(m.group(1)), entry.read_text()))
    return sorted(found)


def _views() -> str:
    return resources.files("hquery.sql").joinpath("views.sql").read_text()


def schema_version_latest() -> int:
    return _migrations()[-1][0]


def sql_identifier(text: str) -> str:
    """A lower-case ``[a-z0-9_]`` name usable unquoted as a table name."""
    ident = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
    return ident if ident and not ident[0].isdigit() else f"t_{ident}"


def vectors(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A Lance ``fixed_size_list<float32>`` column as a 2-D array, without a Python loop."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.values.to_numpy(zero_copy_only=False).reshape(len(array), array.type.list_size)


def vector_table(columns: dict[str, list], vectors: np.ndarray, name: str = "values") -> pa.Table:
    """Key ``columns`` plus one ``fixed_size_list<float32>`` column ``name`` of ``vectors`` (the inverse of
    :func:`vectors`)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    data = {k: pa.array(v, pa.string() if isinstance(v[0], str) else None) for k, v in columns.items()}
    data[name] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    return pa.table(data)


def _check_single_query(text: str) -> None:
    """Refuse anything but one ``SELECT`` (or ``EXPLAIN``) statement."""
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise InputError(str(exc)) from exc
    if len(statements) != 1:
        raise InputError(f"give one statement, not {len(statements)}")
    if statements[0].type not in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN):
        raise InputError(f"only a query (SELECT) can run here, not {statements[0].type.name}")


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


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def content_digest(key: Any) -> str:
    """A short digest of a JSON-able ``key`` (config, data versions): what a version was built from."""
    import hashlib

    return hashlib.blake2b(json.dumps(key, sort_keys=True, default=str).encode(), digest_size=5).hexdigest()


def build_id() -> str:
    """A part of a version id that no other build shares: the UTC time to the second and a random suffix."""
    return f"{utcnow():%y%m%d%H%M%S}{uuid.uuid4().hex[:4]}"


def record_id(prefix: str, created: datetime) -> str:
    """The id of a recorded run (a prompt, an evaluation, an analysis): ``PREFIX_YYYYMMDD_HHMMSS_RANDOM``."""
    return f"{prefix}_{created:%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:6]}"


@functools.cache
def _row_type(columns: tuple[str, ...]) -> type:
    """A named-tuple type for rows with these column names (invalid names become ``_0``, ``_1`` ...)."""
    return collections.namedtuple("Row", columns, rename=True)


def _named_rows(cursor: duckdb.DuckDBPyConnection) -> list[tuple]:
    row = _row_type(tuple(d[0] for d in cursor.description))
    return list(map(row._make, cursor.fetchall()))


@dataclasses.dataclass(frozen=True)
class StageInfo:
    """A stage on disk (``hquery gc`` removes stale ones)."""

    key: str
    bytes: int
    changed_at: datetime
    """UTC."""


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


@dataclasses.dataclass(frozen=True)
class LanceGarbage:
    """Superseded versions of one Lance table that may go, and the bytes of the data files only they use."""

    name: str
    versions: list[int]
    bytes: int


@dataclasses.dataclass(frozen=True)
class LanceTable:
    """A Lance table as the catalog records it."""

    name: str
    kind: str
    encoder: str | None
    version: int
    n_rows: int


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
            con.execute(_queries()["create_schema_version"])
            current = con.execute(_queries()["schema_version"]).fetchall()[0][0]
            pending = [(v, ddl) for v, ddl in _migrations() if current < v <= (upto or v)]
            if not pending:
                return
            con.execute("BEGIN TRANSACTION")
            for version, ddl in pending:
                con.execute(ddl)
                con.execute(_queries()["record_schema_version"], [version])
            if upto is None:
                con.execute(_views())
            con.execute("COMMIT")

    def schema_version(self) -> int:
        with self.connect() as con:
            tables = {r.table_name for r in _named_rows(con.execute("SELECT table_name FROM information_schema.tables"))}
            if "schema_version" not in tables:
                return 0
            return con.execute(_queries()["schema_version"]).fetchall()[0][0]

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
            return _named_rows(con.execute(_queries()[name], list(params)))

    def query_arrow(self, name: str, params: Sequence[Any] = ()) -> pa.Table:
        with self.connect() as con:
            return con.sql(_queries()[name], params=list(params) or None).to_arrow_table()

    def samples_where(self, predicate: str, *, library: bool = False) -> list[str]:
        """Slide samples (or, with ``library``, expression profiles) matching a user's SQL predicate over
        ``samples`` columns. The predicate runs where user SQL runs (:meth:`sandbox`): one expression, read-only."""
        statement = _queries()["library_samples_where" if library else "slide_samples_where"].format(
            predicate=predicate)
        try:
            _check_single_query(statement)
            with self.sandbox() as con:
                rows = _named_rows(con.execute(statement))
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

    def sql(self, text: str) -> pa.Table:
        """Run one read-only query of a user's over the catalog, its views and every Lance table.

        Each committed Lance table is visible by its name (``expression``,
        ``tile_embeddings__<encoder>`` ...), and the default encoders' tables also as
        ``tile_embeddings``, ``slide_embeddings`` and ``rna_embeddings``. The query
        runs in :meth:`sandbox`: one ``SELECT`` (or ``EXPLAIN``), no files read or
        written outside the store's tables, no settings changed.
        """
        try:
            _check_single_query(text)
        except InputError as exc:
            raise StoreError(f"SQL error: {exc}") from exc
        with self.sandbox(lance=True) as con:
            try:
                relation = con.sql(text)
                return relation.to_arrow_table() if relation is not None else pa.table({})
            except duckdb.Error as exc:
                raise StoreError(f"SQL error: {exc}") from exc

    @contextlib.contextmanager
    def sandbox(self, lance: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for a user's SQL: the catalog attached read-only, external access and settings locked.

        It can read the catalog (and, with ``lance``, every committed Lance table,
        handed in as Arrow datasets) and nothing else: no ``COPY``, ``EXPORT``,
        ``ATTACH``, ``INSTALL``/``LOAD``, file-reading functions or ``SET``.
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
        with _exclusive(self.root / LOCK_FILE, f"is writing to {self.root}", wait=wait):
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
        with _exclusive(self.root / REFRESH_LOCK_FILE,
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
        try:
            yield txn
            txn._commit()
        except BaseException:
            txn._abort()
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
                        _queries()["put_lance_table"],
                        [table.name, table.kind, table.encoder, version, table.n_rows],
                    )


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
        if name not in _queries():
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
                    con.execute(_queries()[name], params)
                    for key in staged:
                        con.unregister(key)
                for table in self._lance.values():
                    con.execute(
                        _queries()["put_lance_table"],
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
        with _exclusive(self.root / ".lock", f"is staging into {self.root}", wait=wait):
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


@contextlib.contextmanager
def _exclusive(lock_path: Path, busy: str, wait: float = 0.0) -> Iterator[None]:
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


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
