"""The hquery store: one directory holding a DuckDB catalog and Lance tables.

This package is the only code that opens paths inside a store or runs SQL
(its statements live in :mod:`hquery.sql`). Everything else goes through
:class:`Store` and :class:`Transaction`, imported from here. One module per
concept: :mod:`~hquery.store.catalog` (the :class:`Store` handle),
:mod:`~hquery.store.transaction`, :mod:`~hquery.store.stage`,
:mod:`~hquery.store.statements` (the SQL text), :mod:`~hquery.store.layout`
(names on disk), :mod:`~hquery.store.locks`, :mod:`~hquery.store.tables`,
:mod:`~hquery.store.arrays`, :mod:`~hquery.store.ids`, :mod:`~hquery.store.kills`, :mod:`~hquery.store.disk`.

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

from hquery.errors import StoreError
from hquery.store.arrays import vector_table, vectors
from hquery.store.catalog import DEFAULT_LOCK_WAIT_S, SQL_MEMORY_LIMIT, SQL_TIMEOUT_S, Store, StoreSummary
from hquery.store.ids import build_id, content_digest, record_id, utcnow
from hquery.store.kills import KILL_POINTS, kill_point
from hquery.store.layout import MARKER, default_store_path, directory_size
from hquery.store.stage import Stage, StageInfo
from hquery.store.statements import schema_version_latest, sql_identifier
from hquery.store.tables import LanceGarbage, LanceTable
from hquery.store.transaction import Transaction

__all__ = [
    "DEFAULT_LOCK_WAIT_S", "KILL_POINTS", "MARKER", "SQL_MEMORY_LIMIT", "SQL_TIMEOUT_S", "LanceGarbage", "LanceTable",
    "Stage", "StageInfo", "Store",
    "StoreError", "StoreSummary", "Transaction", "build_id", "content_digest", "default_store_path",
    "directory_size", "kill_point", "record_id", "schema_version_latest", "sql_identifier", "utcnow",
    "vector_table", "vectors",
]
