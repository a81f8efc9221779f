"""How results look on a terminal: aligned tables, files in several formats, and the hints errors get."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from hquery.retrieval.routes import short_label

FORMATS = ("table", "csv", "json", "parquet")

HINTS = {
    "init": "hquery init --store {store}",
    "ingest": "hquery ingest MANIFEST --expression FILE",
    "ingest spots": "hquery ingest MANIFEST --spots FILE",
    "train align": "hquery train align",
    "train align --folds": "hquery train align --folds 5",
    "index": "hquery index",
    "train peka": "hquery train peka",
    "embed": "hquery embed",
    "train histoprism": "hquery train histoprism",
    "train histoprism --panel collection": "hquery train histoprism --panel collection:hallmark",
    "train predictor": "hquery train predictor --collection {collection}",
}
"""What the CLI suggests for an error's ``needs``: the command that takes the missing step."""


def hint(needs: str | None, **values: str) -> str:
    """``; run `COMMAND``` for a known ``needs``, else nothing."""
    command = HINTS.get(needs or "")
    return f"; run `{command.format_map({'collection': 'hallmark', 'store': 'DIR', **values})}`" if command else ""


def print_rows(columns: list[str], rows: list[tuple]) -> None:
    """An aligned table on standard output; off a terminal every column is kept, however wide."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=60)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(width=None if sys.stdout.isatty() else 240).print(table)


def check_out(out: Path | None) -> Path | None:
    """Refuse an ``--out`` that cannot be written before any work is done (or recorded)."""
    if out is None:
        return None
    if out.is_dir():
        raise click.BadParameter(f"{out} is a folder; give a file path", param_hint="--out")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise click.BadParameter(f"{parent} does not exist", param_hint="--out")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise click.BadParameter(f"{out} cannot be written here", param_hint="--out")
    return out


def write_table(table, fmt: str, out: Path | None) -> None:
    """An Arrow table as an aligned table, CSV, JSON or Parquet, to ``out`` or standard output."""
    import polars as pl

    frame = pl.from_arrow(table) if table.num_columns else pl.DataFrame()
    if fmt in ("csv", "table"):  # nested, binary and extension values as text, which CSV can hold
        frame = frame.with_columns(pl.Series(name, [_text(v) for v in frame[name].to_list()], pl.String)
                                   for name, dtype in frame.schema.items() if not _flat(dtype))
    if fmt == "parquet":
        if out is None:
            raise click.UsageError("--format parquet needs --out FILE")
        frame.write_parquet(out)
    elif fmt == "csv":
        text = frame.write_csv()
        out.write_text(text) if out else click.echo(text, nl=False)
    elif fmt == "json":
        text = json.dumps(frame.to_dicts(), default=_json_value, indent=1)
        out.write_text(text) if out else click.echo(text)
    else:
        with pl.Config(tbl_rows=50, tbl_cols=20, fmt_str_lengths=60):
            text = str(frame)
        out.write_text(text) if out else click.echo(text)


def _flat(dtype) -> bool:
    """Whether CSV holds values of this polars type as they are."""
    import polars as pl

    return dtype.is_numeric() or dtype.is_temporal() or isinstance(dtype, (pl.String, pl.Boolean, pl.Null,
                                                                            pl.Categorical, pl.Enum))


def _json_value(value):
    """What JSON holds of a value it has no type for: an integral decimal (HUGEINT) as a number, exactly."""
    import decimal

    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else format(value, "f")
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def _text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return _json_value(value) if isinstance(value, bytes) else json.dumps(value, default=_json_value)


def mean_sd(value: dict | None) -> str:
    return f"{value['mean']:.3f} ± {value['sd']:.3f}" if value else ""


RECALL_COLUMNS = ["direction", "metric", "aligned", "ridge (no alignment)", "chance", "vs ridge", "vs chance"]


def recall_rows(summary: dict, ks=(1, 5, 10, 50)) -> list[tuple]:
    """Rows ``(direction, metric, aligned, ridge, chance, x ridge, x chance)`` from nested mean/sd metrics."""
    rows = []
    for direction in ("he_to_rna", "rna_to_he"):
        for metric in [f"recall@{k}" for k in ks] + ["mrr", "mean_rank", "median_rank"]:
            a = summary["aligned"][direction].get(metric)
            r = summary["ridge"][direction].get(metric)
            c = summary["chance"][direction].get(metric)
            if a is None:
                continue

            def ratio(x):
                return f"{a['mean'] / x['mean']:.1f}x" if x and x["mean"] and metric.startswith(("recall", "mrr")) else ""

            rows.append((direction, metric, mean_sd(a), mean_sd(r), f"{c['mean']:.3f}" if c else "", ratio(r), ratio(c)))
    return rows


PEKA_COLUMNS = ["features", "trainable", "PCC top-50 HVG (mean ± sd)", "vs None", "time"]
ADAPTER_NAMES = {"none": "None (frozen)", "lora": "LoRA", "miss": "PEKA (MiSS bat)"}


def adapter_rows(rows) -> list[tuple]:
    """Printable rows of an adapter comparison: trainable %, PCC mean ± sd, change vs the frozen backbone.

    The change is a difference in PCC, and also relative when the frozen backbone's PCC is positive.
    """
    none = next((r.pcc_mean for r in rows if r.method == "none"), None)
    out = []
    for r in rows:
        change = ""
        if none is not None and r.method != "none":
            change = f"{r.pcc_mean - none:+.3f}" + (f" ({(r.pcc_mean / none - 1) * 100:+.1f}%)" if none > 0 else "")
        out.append((ADAPTER_NAMES.get(r.method, r.method), f"{r.trainable_fraction * 100:.1f}%",
                    f"{r.pcc_mean:.3f} ± {r.pcc_sd:.3f}", change, f"{r.seconds:.0f}s"))
    return out


HISTOPRISM_COLUMNS = ["method", "slide PCC HVG-50", "slide PCC all", "spot PCC HVG-50", "spot PCC all",
                      "GPC slide", "GPC spot"]
HISTOPRISM_NAMES = {"histoprism": "HistoPrism", "no_conditioning": "  without cross-attention",
                    "ridge": "ridge on frozen features", "ridge_type": "ridge + cancer type"}


def histoprism_rows(summary: dict, coherence: dict) -> list[tuple]:
    """One row per expression predictor: PCC on the HVG-50 and all genes (slide, spot), and mean GPC."""
    def cell(method, level, metric):
        return mean_sd(summary.get(method, {}).get(level, {}).get(metric))

    def gpc(method, level):
        value = coherence.get(level, {}).get(method, {}).get("all")
        return f"{value:.3f}" if value is not None else ""

    return [(name, cell(m, "slide", "pcc_hvg50"), cell(m, "slide", "pcc_all"), cell(m, "spot", "pcc_hvg50"),
             cell(m, "spot", "pcc_all"), gpc(m, "slide"), gpc(m, "spot")) for m, name in HISTOPRISM_NAMES.items()]


def print_prompt(run, level: str, limit: int, shown_all: bool) -> None:
    """Each gene set's highest-scoring slides (or tiles), with how many of its genes the library has."""
    import pyarrow.compute as pc

    for match in run.matches:
        found = f"{match.n_found}/{run.n_members[match.name]} genes in the library"
        missing = f" (missing: {', '.join(match.missing[:8])}{' ...' if len(match.missing) > 8 else ''})" \
            if match.missing else ""
        rows = run.results.filter(pc.equal(run.results["gene_set"], match.name)).sort_by([("score", "descending")])
        click.echo(f"{match.name}: {found}{missing}; {rows.num_rows} {level}s, highest score first")
        route, trust = (rows["route"][0].as_py(), rows["trust"][0].as_py()) if rows.num_rows else (None, None)
        if route == "measured":
            click.echo("  from each sample's measured expression")
        elif route:
            held_out = f"held-out R² {trust:.2f}" if trust is not None and trust == trust else "never evaluated"
            click.echo(f"  by {route} ({held_out})")
        columns = ["sample_id"] + (["tile_index"] if level == "tile" else []) + [
            "cancer_type", "score", "percentile", "type_z", "dispersion", "effective_k"]
        shown = rows.slice(0, limit).select(columns).to_pylist()
        print_rows(["sample"] + (["tile"] if level == "tile" else []) + [
                   "cancer type", "score", "library %ile", "z in type", "dispersion", "effective K"],
                   [tuple(_cell(k, v) for k, v in r.items()) for r in shown])
        if rows.num_rows > limit and not shown_all:
            click.echo(f"... {rows.num_rows - limit} more; --out FILE or --format csv for all")


def _cell(column: str, value):
    if isinstance(value, float):
        return "" if value != value else f"{value:.1f}" if column == "percentile" else f"{value:.3f}"
    return value


def spectrum_table(spectrum, collection: str) -> tuple[list[str], list[tuple]]:
    """Per gene set, each method's calibrated R², r and r within cancer type, the route ``auto`` takes; then the means."""
    labels = {m: short_label(m) for m in spectrum.methods}
    columns = ["gene set"] + [f"{label} {metric}" for label in labels.values()
                              for metric in ("R²", "r", "rT")] + ["auto takes"]

    def cells(values: dict) -> list[str]:
        return [f"{values[m][name]:.3f}" for m in labels for name in ("r2_calibrated", "pearson_r", "r_within_type")]

    rows = []
    for name in dict.fromkeys(r["gene_set"] for r in spectrum.rows):
        values = {m: {key: spectrum.metric(name, m, key) for key in ("r2_calibrated", "pearson_r", "r_within_type")}
                  for m in labels}
        rows.append((name.removeprefix(f"{collection.upper()}_"), *cells(values),
                     short_label(spectrum.routes[name])))
    rows.append(("mean", *cells(spectrum.means()), ""))
    return columns, rows
