"""The catalog's SQL, read from :mod:`hquery.sql`: named statements, migrations and views, and the checks and
row shapes every statement shares."""

from __future__ import annotations

import collections
import functools
import re
from importlib import resources

import duckdb

from hquery.errors import InputError


@functools.cache
def queries() -> dict[str, str]:
    text = resources.files("hquery.sql").joinpath("queries.sql").read_text()
    out: dict[str, str] = {}
    for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        lines = [ln for ln in body.splitlines() if not ln.startswith("--")]
        out[name.strip()] = "\n".join(lines).strip()
    return out


def migrations() -> list[tuple[int, str]]:
    folder = resources.files("hquery.sql").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        m = re.match(r"(\d+)_.*\.sql$", entry.name)
        if m:
            found.append((int(m.group(1)), entry.read_text()))
    return sorted(found)


def views() -> str:
    return resources.files("hquery.sql").joinpath("views.sql").read_text()


def schema_version_latest() -> int:
    return migrations()[-1][0]


def sql_identifier(text: str) -> str:
    """A lower-case ``[a-z0-9_]`` name usable unquoted as a table name."""
    ident = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
    return ident if ident and not ident[0].isdigit() else f"t_{ident}"


def check_single_query(text: str) -> None:
    """Refuse anything but one ``SELECT`` (or ``EXPLAIN``) statement."""
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise InputError(str(exc)) from exc
    if len(statements) != 1:
        raise InputError(f"give one statement, not {len(statements)}")
    if statements[0].type not in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN):
        raise InputError(f"only a query (SELECT) can run here, not {statements[0].type.name}")


@functools.cache
def _row_type(columns: tuple[str, ...]) -> type:
    """A named-tuple type for rows with these column names (invalid names become ``_0``, ``_1`` ...)."""
    return collections.namedtuple("Row", columns, rename=True)


def named_rows(cursor: duckdb.DuckDBPyConnection) -> list[tuple]:
    row = _row_type(tuple(d[0] for d in cursor.description))
    return list(map(row._make, cursor.fetchall()))
