"""The names inside a store directory (see :mod:`hquery.store` for the layout)."""

from __future__ import annotations

import os
from pathlib import Path

MARKER = "hquery-store.json"
CATALOG = "catalog.duckdb"
LANCE_DIR = "lance"
ARTIFACTS_DIR = "artifacts"
STAGING_DIR = "staging"
LOCK_FILE = ".write.lock"
REFRESH_LOCK_FILE = ".refresh.lock"
STORE_FORMAT = "hquery-store"


def default_store_path() -> Path:
    """``$HQUERY_STORE`` or ``./hquery-store``."""
    return Path(os.environ.get("HQUERY_STORE", "hquery-store"))


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
