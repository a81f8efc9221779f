"""Gene symbols: normalisation and aliases.

Symbols are upper-cased and stripped; an alias or previous symbol maps to its
current HGNC symbol. hquery ships a small table of common renames
(``hquery/data/gene_aliases.tsv``, from HGNC) and imports HGNC's full
``hgnc_complete_set.txt`` on request (:func:`read_hgnc_aliases`). Ensembl gene
IDs (``.h5ad`` ``var_names``, Space Ranger's features) are mapped to symbols with
a shipped table (:func:`ensembl_symbols`); an ID it does not know is kept as is.
"""

from __future__ import annotations

import functools
import gzip
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

import pyarrow as pa

from hquery.errors import InputError


def normalise_symbol(symbol: str) -> str:
    return str(symbol).strip().upper()


def shipped_aliases() -> dict[str, str]:
    """The common renames shipped with hquery, alias -> current symbol."""
    text = resources.files("hquery").joinpath("data/gene_aliases.tsv").read_text()
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    return {normalise_symbol(a): normalise_symbol(s) for a, s in rows}


def read_hgnc_aliases(path: str | Path) -> dict[str, str]:
    """Alias and previous symbols from HGNC's ``hgnc_complete_set.txt``.

    An alias claimed by two approved symbols is ambiguous and skipped; an alias
    that is itself an approved symbol is skipped too.
    """
    path = Path(path)
    try:
        import polars as pl

        df = pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None)
    except Exception as exc:
        raise InputError(f"{path}: cannot read as an HGNC TSV: {exc}") from exc
    missing = {"symbol", "alias_symbol", "prev_symbol"} - set(df.columns)
    if missing:
        raise InputError(f"{path}: not an HGNC complete set; missing columns {sorted(missing)}")
    approved = {normalise_symbol(s) for s in df["symbol"].drop_nulls()}
    claims: dict[str, set[str]] = {}
    for symbol, alias, prev in df.select("symbol", "alias_symbol", "prev_symbol").iter_rows():
        for field in (alias, prev):
            for name in (field or "").split("|"):
                name = normalise_symbol(name)
                if name and name not in approved:
                    claims.setdefault(name, set()).add(normalise_symbol(symbol))
    return {alias: next(iter(s)) for alias, s in claims.items() if len(s) == 1}


def aliases_table(aliases: Mapping[str, str], source: str) -> pa.Table:
    return pa.table(
        {
            "alias": pa.array(list(aliases), pa.string()),
            "symbol": pa.array(list(aliases.values()), pa.string()),
            "source": pa.array([source] * len(aliases), pa.string()),
        }
    )


ENSEMBL_ID = re.compile(r"^ENSG\d{11}(\.\d+)?$")


@functools.cache
def ensembl_symbols() -> dict[str, str]:
    """Ensembl gene ID (no version) -> HGNC symbol for about 19,800 protein-coding genes, shipped as
    ``hquery/data/ensembl_symbols.tsv.gz`` (from the Human Protein Atlas table in pirlygenes 4.0.0;
    ``tools/make_ensembl_symbols.py``)."""
    with resources.files("hquery").joinpath("data/ensembl_symbols.tsv.gz").open("rb") as fh:
        text = gzip.decompress(fh.read()).decode()
    return dict(line.split("\t") for line in text.splitlines()[1:] if line)


def resolve_symbols(symbols: Iterable[str], aliases: Mapping[str, str]) -> list[str]:
    """Current symbols for ``symbols``: normalised, Ensembl gene IDs (``ENSG...``, with or without a version)
    mapped to their symbols where the shipped table knows them, and renamed where an alias is known.

    Two columns that resolve to one symbol are summed by the expression reader.

    >>> resolve_symbols(["ENSG00000186092.4", "ENSG00000243485", " tp53 "], {})
    ['OR4F5', 'ENSG00000243485', 'TP53']
    """
    out = []
    for symbol in map(normalise_symbol, symbols):
        if ENSEMBL_ID.match(symbol):
            symbol = ensembl_symbols().get(symbol.split(".")[0], symbol.split(".")[0])
        out.append(aliases.get(symbol, symbol))
    return out
