"""Expression matrices: read, validate, normalise to log space.

Rows are samples (first column ``sample_id``), columns gene symbols. Spot files
(tile-level expression) carry ``x`` and ``y`` columns after ``sample_id``: the
level-0 coordinates of the tile each spot belongs to.

Units: ``counts`` become log1p(CPM); ``tpm`` becomes log1p(TPM); ``log`` is
taken as already log-normalised. Symbols are normalised and aliased; columns
that resolve to the same symbol are summed in linear space.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hquery.errors import InputError
from hquery.genes import resolve_symbols

if TYPE_CHECKING:  # polars takes a fifth of a second to import; only readers need it
    import polars as pl

UNITS = ("counts", "tpm", "log")
LARGEST = {"counts": 1e12, "tpm": 1.001e6}
"""The most one gene of one sample can hold: no sequencing run gives a gene 10^12 reads, and TPM sums to 10^6."""
SPOT_COORDS = ("x", "y")


@dataclasses.dataclass
class ExpressionMatrix:
    """Log-normalised expression, one row per sample (or spot)."""

    source: Path
    sample_ids: list[str]
    genes: list[str]
    values: np.ndarray
    coords: np.ndarray | None = None
    """``[n, 2]`` int64 tile coordinates for spot rows, else ``None``."""
    merged: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Symbols that several columns named (``A2M`` twice, ``a2m`` beside ``A2M``): their columns, summed into one."""

    def align(self, universe: list[str]) -> tuple[np.ndarray, int, int]:
        """Values in ``universe`` order (NaN where this file does not measure a gene).

        Returns the aligned float32 matrix, the number of universe genes matched
        and the number of this file's genes dropped (not in the universe).
        """
        position = {g: i for i, g in enumerate(universe)}
        cols = np.array([position.get(g, -1) for g in self.genes])
        keep = cols >= 0
        if not keep.any():
            raise InputError(
                f"{self.source}: shares no genes with the store's gene universe "
                f"({len(universe)} genes, e.g. {', '.join(universe[:3])}); "
                f"this file has e.g. {', '.join(self.genes[:3])}"
            )
        out = np.full((len(self.sample_ids), len(universe)), np.nan, dtype=np.float32)
        out[:, cols[keep]] = self.values[:, keep]
        return out, int(keep.sum()), int((~keep).sum())


@dataclasses.dataclass
class Table:
    """A file's columns by position (``c0``, ``c1`` ...) and its header as written: duplicated names are kept,
    so two columns of one gene can be summed, and the first column is read as text, so ``0010`` stays ``0010``."""

    frame: pl.DataFrame
    names: list[str]

    def column(self, name: str) -> str:
        """The positional column of the first header cell called ``name``."""
        return self.frame.columns[self.names.index(name)]


def read_table(path: Path) -> Table:
    """Read an expression file (CSV, TSV, optionally gzipped, parquet or .h5ad) into a :class:`Table`."""
    import polars as pl

    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            frame = pl.read_parquet(path)
            names = frame.columns
            frame = frame.rename(dict(zip(names, _positional(len(names)))))
            return Table(frame.with_columns(pl.col("c0").cast(pl.String)), names)
        if name.endswith(".h5ad"):
            return _read_h5ad(path)
        separator = "\t" if any(name.endswith(s) for s in (".tsv", ".tsv.gz", ".txt", ".txt.gz")) else ","
        if name.endswith(".gz"):
            import gzip

            with gzip.open(path, "rb") as fh:
                source = fh.read()
            first = source.split(b"\n", 1)[0]
        else:
            source = path
            with open(path, "rb") as fh:
                first = fh.readline()
        names = _header(first, separator, path)
        frame = pl.read_csv(source, separator=separator, infer_schema_length=None, new_columns=_positional(len(names)),
                            schema_overrides={"c0": pl.String})
        return Table(frame, names)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot read expression file: {exc}") from exc


def _positional(n: int) -> list[str]:
    return [f"c{i}" for i in range(n)]


def _header(line: bytes, separator: str, path: Path) -> list[str]:
    """The names in a CSV header line, as written."""
    import csv
    import io

    line = line.rstrip(b"\r\n")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the header is not UTF-8 text ({exc})") from exc
    names = next(csv.reader(io.StringIO(text), delimiter=separator), [])
    if not names:
        raise InputError(f"{path}: the file is empty")
    return [n.strip() for n in names]


def _read_h5ad(path: Path) -> Table:
    import polars as pl

    try:
        import anndata
    except ImportError as exc:
        raise InputError(f"{path}: reading .h5ad needs anndata (pip install 'hquery[h5ad]')") from exc
    adata = anndata.read_h5ad(path)
    matrix = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    names = ["sample_id"] + [str(v) for v in adata.var_names]
    frame = pl.DataFrame(matrix, schema=_positional(len(names))[1:], orient="row")
    return Table(frame.insert_column(0, pl.Series("c0", [str(o) for o in adata.obs_names])), names)


def read_expression(
    path: str | Path,
    units: str = "counts",
    aliases: Mapping[str, str] | None = None,
    spots: bool = False,
) -> ExpressionMatrix:
    """Read an expression file into log-normalised values.

    Parameters
    ----------
    path
        CSV, TSV (optionally gzipped), parquet or .h5ad; samples are rows.
    units
        ``counts`` (default), ``tpm`` or ``log``.
    aliases
        alias -> current symbol, applied to column names.
    spots
        Expect ``x`` and ``y`` columns (tile-level spot expression).

    Returns
    -------
    ExpressionMatrix with float32 values in log space.
    """
    import polars as pl

    path = Path(path)
    if units not in UNITS:
        raise InputError(f"unknown units {units!r}; use one of {', '.join(UNITS)}")
    if not path.is_file():
        raise InputError(f"{path}: expression file not found")
    table = read_table(path)
    df = table.frame
    if df.width < 2:
        raise InputError(f"{path}: needs a sample_id column and at least one gene column")
    sample_ids = [s.strip() if s is not None else "" for s in df["c0"].to_list()]
    for i, sid in enumerate(sample_ids):
        if not sid:
            raise InputError(f"{path}: row {i + 1} has an empty sample id")
    key_columns = ["sample_id", *(SPOT_COORDS if spots else ())]
    for name in key_columns:
        at = [i + 1 for i, n in enumerate(table.names) if n.strip().lower() == name]
        if len(at) > 1:
            raise InputError(f"{path}: column {name} appears {len(at)} times in the header (columns "
                             f"{', '.join(map(str, at))}); each sample is named in one column")
    meta = ["c0"]
    coords = None
    if spots:
        missing = [c for c in SPOT_COORDS if c not in table.names]
        if missing:
            raise InputError(f"{path}: a spot file needs columns sample_id, x, y; missing {', '.join(missing)}")
        columns = [table.column(c) for c in SPOT_COORDS]
        try:
            given = df.select(pl.col(columns).cast(pl.Float64, strict=True)).to_numpy()
        except Exception as exc:
            raise InputError(f"{path}: spot coordinates x, y must be integers: {exc}") from exc
        bad = np.argwhere(~np.isfinite(given) | (given != np.round(given)))
        if len(bad):
            r, c = bad[0]
            raise InputError(f"{path}: spot coordinates x, y must be integers; row {r + 1} (sample "
                             f"{sample_ids[r]}) has {SPOT_COORDS[c]}={given[r, c]:g}")
        coords = given.astype(np.int64)
        meta += columns
        keys = list(zip(sample_ids, map(tuple, coords)))
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise InputError(f"{path}: duplicated spot {dup[0]} at x={dup[1][0]}, y={dup[1][1]}")
    else:
        seen: dict[str, int] = {}
        for i, sid in enumerate(sample_ids):
            if sid in seen:
                raise InputError(f"{path}: duplicated sample_id {sid} (rows {seen[sid] + 1} and {i + 1})")
            seen[sid] = i
    positions = [i for i, c in enumerate(df.columns) if c not in meta]
    if not positions:
        raise InputError(f"{path}: no gene columns")
    gene_cols = [table.names[i] for i in positions]
    values = _numeric_matrix(df.select([df.columns[i] for i in positions]), gene_cols, path, sample_ids)
    if units in ("counts", "tpm"):
        neg = np.argwhere(values < 0)
        if len(neg):
            r, c = neg[0]
            raise InputError(
                f"{path}: negative {units} {values[r, c]:g} for sample {sample_ids[r]}, gene {gene_cols[c]} "
                f"({len(neg)} negative values in all); give units 'log' for log-scale data"
            )
        ceiling = LARGEST[units]
        beyond = np.argwhere(values > ceiling)
        if len(beyond):
            r, c = beyond[0]
            raise InputError(
                f"{path}: {units} {values[r, c]:g} for sample {sample_ids[r]}, gene {gene_cols[c]} is more than "
                f"any {units} can be (at most {ceiling:g}; {len(beyond)} such values): an overflow or a "
                "missing-value code? Fix those values, or give the right --units"
            )
    symbols = resolve_symbols(gene_cols, aliases or {})
    for col, sym in zip(gene_cols, symbols):
        if not sym:
            raise InputError(f"{path}: column {col!r} has an empty gene symbol")
    if units == "log":
        with np.errstate(over="ignore"):
            linear = np.expm1(values)
        # beyond about 710 expm1 overflows; below about -37 it rounds to -1, whose log1p is -inf
        out_of_range = np.argwhere(~np.isfinite(linear) | (linear <= -1))
        if len(out_of_range):
            r, c = out_of_range[0]
            large = values[r, c] > 0
            raise InputError(f"{path}: log value {values[r, c]:g} for sample {sample_ids[r]}, gene {gene_cols[c]} "
                             f"is too {'large' if large else 'small'} to be log expression ({len(out_of_range)} "
                             "such values); " + ("are these counts? give units 'counts' or 'tpm'" if large else
                                                 "give log1p-scale values (log of expression + 1)"))
    else:
        linear = values
    columns_of: dict[str, list[str]] = {}
    for col, sym in zip(gene_cols, symbols):
        columns_of.setdefault(sym, []).append(col)
    merged = {s: tuple(cols) for s, cols in columns_of.items() if len(cols) > 1}
    genes, linear = _sum_duplicates(symbols, linear)
    if units == "counts":
        libsize = linear.sum(axis=1, keepdims=True)
        empty = np.flatnonzero(libsize[:, 0] <= 0)
        if len(empty):
            raise InputError(f"{path}: sample {sample_ids[empty[0]]} has no counts (library size 0)")
        linear = linear / libsize * 1e6
    logged = np.log1p(linear).astype(np.float32)
    return ExpressionMatrix(path, sample_ids, genes, logged, coords, merged)


def _numeric_matrix(df: pl.DataFrame, genes: list[str], path: Path, sample_ids: list[str]) -> np.ndarray:
    import polars as pl

    for col, gene, dtype in zip(df.columns, genes, df.dtypes):
        if not dtype.is_numeric():
            cast = df[col].cast(pl.Float64, strict=False)
            bad = (cast.is_null() & df[col].is_not_null()).arg_true()
            if len(bad):
                i = bad[0]
                raise InputError(
                    f"{path}: non-numeric value {df[col][i]!r} for sample {sample_ids[i]}, gene {gene}"
                )
    matrix = df.cast(pl.Float64, strict=False).to_numpy()
    missing = np.argwhere(~np.isfinite(matrix))
    if len(missing):
        r, c = missing[0]
        raise InputError(
            f"{path}: missing or non-finite value for sample {sample_ids[r]}, gene {genes[c]} "
            f"({len(missing)} in all)"
        )
    return matrix


def _sum_duplicates(symbols: list[str], values: np.ndarray) -> tuple[list[str], np.ndarray]:
    if len(set(symbols)) == len(symbols):
        return symbols, values
    genes = list(dict.fromkeys(symbols))
    index = {g: i for i, g in enumerate(genes)}
    out = np.zeros((values.shape[0], len(genes)), dtype=values.dtype)
    np.add.at(out.T, np.array([index[s] for s in symbols]), values.T)
    return genes, out
