"""``hquery index``, ``prompt`` and ``map``: answering gene-set prompts from the aligned library."""

from __future__ import annotations

from pathlib import Path

import click

from hquery.cli.options import (
    MethodChoice,
    engine_options,
    knn_options,
    neighbour_options,
    neighbour_rule,
    open_store,
    ray_engine,
    sample_list,
    soft_knn,
    store_option,
)
from hquery.cli.render import FORMATS, check_out, print_prompt, write_table
from hquery.export import write_geojson, write_h5ad
from hquery.genesets import resolve_prompts
from hquery.retrieval.prompt import run_prompt, score_measured
from hquery.retrieval.tilemap import render_tile_map

genes_option = click.option(
    "--genes", "prompts", multiple=True, metavar="PROMPT",
    help="A gene-set name (or unambiguous prefix: HALLMARK_G2M, G2M), GENE,GENE,... or @FILE "
         "(.gmt or a list of symbols). Repeat for several.")


@click.command()
@click.option("--kind", type=click.Choice(["auto", "flat", "hnsw", "ivf"]), default="auto", show_default=True,
              help="auto: exact (flat) up to --approximate-above vectors, HNSW beyond.")
@click.option("--approximate-above", type=int, default=200_000, show_default=True)
@click.option("--model", "version", help="Alignment model version [default: the current one].")
@click.option("--shards", type=click.IntRange(min=1), default=1, show_default=True,
              help="Fill an IVF index in this many shards side by side (threads, or Ray tasks with --engine ray), "
                   "merged into one.")
@engine_options
@store_option
def index(kind, approximate_above, version, shards, engine, address, ray_workers, gpus_per_worker,
          store_path_) -> None:
    """Project the RNA library with the alignment model and build the FAISS index."""
    from hquery.retrieval.index_builder import build_index

    ray = ray_engine(engine, address, ray_workers, gpus_per_worker)
    report = build_index(open_store(store_path_), kind=kind, approximate_above=approximate_above,
                         model_version=version, shards=shards, engine=ray)
    recall = f", recall@10 vs exact {report.recall_vs_exact:.3f}" if report.recall_vs_exact is not None else ""
    click.echo(f"index {report.version}: {report.n_vectors} RNA profiles x {report.dim} dims, {report.kind}"
               f"{recall}, {'GPU' if report.on_gpu else 'CPU'}, {report.seconds:.1f}s; now current")


EXPORT_FORMATS = ("h5ad", "geojson")
"""What ``prompt --format`` writes through :mod:`hquery.export` besides the tables."""


def result_options(formats: tuple[str, ...] = FORMATS):
    """``--min-genes``, ``--limit``, ``--format`` and ``--out``: what every scoring command takes."""
    out_help = "Write every result row to this file" + (
        " (with --format geojson, a folder: one SAMPLE.geojson a slide)." if "geojson" in formats else ".")

    def decorate(command):
        for option in reversed([
            click.option("--min-genes", type=click.IntRange(min=1), default=5, show_default=True,
                         help="A gene set with fewer genes in the library is an error."),
            click.option("--limit", type=int, default=20, show_default=True,
                         help="Rows shown per gene set in table format."),
            click.option("--format", "fmt", type=click.Choice(formats), default="table", show_default=True),
            click.option("--out", type=click.Path(path_type=Path), help=out_help),
        ]):
            command = option(command)
        return command
    return decorate


def check_export(fmt: str, level: str, out: Path | None) -> None:
    """Refuse an export ``--format`` that cannot be written before the prompt runs (and is recorded)."""
    if out is None:
        raise click.UsageError(f"--format {fmt} needs --out ({'a folder' if fmt == 'geojson' else 'a .h5ad file'})")
    if fmt == "geojson":
        if level != "tile":
            raise click.UsageError("--format geojson writes QuPath detections, which are tiles: add --level tile")
        if out.exists() and not out.is_dir():
            raise click.BadParameter(f"{out} is a file; give a folder for the .geojson files", param_hint="--out")
    else:
        check_out(out)


@click.command()
@genes_option
@click.option("--collection", help="Every gene set of a collection, e.g. hallmark.")
@click.option("--level", type=click.Choice(["slide", "tile"]), default="slide", show_default=True)
@knn_options
@neighbour_options
@click.option("--aggregate", type=click.Choice(["score", "expression"]), default="score", show_default=True,
              help="Average the neighbours' scores, or their expression and then score it.")
@click.option("--method", type=MethodChoice(),
              default="auto", show_default=True,
              help="auto: per gene set, the route with the best held-out R² in its latest `hquery eval spectrum` "
                   "(Soft-kNN where it was never evaluated). Or one route: Soft-kNN over the RNA library, the "
                   "collection's trained MLP (`hquery train predictor`), ssGSEA on the expression HistoPrism predicts "
                   "(`hquery train histoprism`), the ridge on slide features + cancer type, or the mean of that "
                   "ridge and calibrated Soft-kNN.")
@click.option("--cohort", help="Only slides of this cohort.")
@click.option("--samples", help="Only these sample ids (comma-separated).")
@click.option("--where", help="Only slides whose samples row matches this SQL predicate, e.g. \"cancer_type = 'BRCA'\".")
@result_options(FORMATS + EXPORT_FORMATS)
@store_option
def prompt(prompts, collection, level, k, tau, match, neighbours_where, aggregate, method, cohort, samples, where, min_genes, limit, fmt, out,
           store_path_) -> None:
    """Score gene-set prompts on every slide (or tile) by Soft-kNN over the aligned RNA library (or by --method).

    Each run is recorded in the catalog: `hquery sql "select * from prompt_results"`.
    """
    store = open_store(store_path_)
    knn = soft_knn(k, tau)
    if fmt in EXPORT_FORMATS:
        check_export(fmt, level, out)
    else:
        check_out(out)
    wanted = sample_list(samples)
    run = run_prompt(store, resolve_prompts(store, prompts, collection), level=level, knn=knn,
                     neighbours=neighbour_rule(match, neighbours_where), aggregate=aggregate,
                     method=method, cohort=cohort, samples=wanted, where=where, min_genes=min_genes)
    if fmt in EXPORT_FORMATS:
        paths = write_geojson(store, run, out) if fmt == "geojson" else [write_h5ad(store, run, out)[0]]
        click.echo(f"wrote {len(paths)} {fmt} file(s): {', '.join(map(str, paths[:3]))}"
                   f"{', ...' if len(paths) > 3 else ''}", err=True)
    elif fmt != "table" or out:
        write_table(run.results, fmt if fmt != "table" or not out else "csv", out)
    if fmt == "table":
        print_prompt(run, level, limit, shown_all=out is not None)
    for note in run.notes:
        click.secho(f"note: {note}", fg="yellow", err=True)
    cached = ("scored by the trained MLP" if method == "mlp" else
              "ssGSEA on HistoPrism's predicted expression" if method == "histoprism" else
              "all library scores cached" if run.computed_sets == 0 else f"ssGSEA on {run.computed_sets} set(s)")
    if method == "auto":
        routes = run.results.select(["gene_set", "route"]).to_pylist()
        counts = {}
        for route in {r["gene_set"]: r["route"] for r in routes}.values():
            counts[route] = counts.get(route, 0) + 1
        cached += "; routes " + ", ".join(f"{route} {n}" for route, n in sorted(counts.items()))
    click.echo(f"run {run.run_id}: {run.results.num_rows} scores, {cached}, {run.seconds:.2f}s", err=fmt != "table")


@click.command()
@genes_option
@click.option("--collection", help="Every gene set of a collection, e.g. hallmark.")
@click.option("--cohort", help="Only samples of this cohort.")
@click.option("--samples", help="Only these sample ids (comma-separated).")
@click.option("--where", help="Only samples whose samples row matches this SQL predicate.")
@result_options()
@store_option
def score(prompts, collection, cohort, samples, where, min_genes, limit, fmt, out, store_path_) -> None:
    """Score gene sets on the samples' measured expression, recorded beside the predicted scores.

    `hquery sql "select source, cancer_type, avg(score) from prompt_results group by all"` then compares the two.
    """
    store = open_store(store_path_)
    check_out(out)
    run = score_measured(store, resolve_prompts(store, prompts, collection), cohort=cohort,
                         samples=sample_list(samples), where=where, min_genes=min_genes)
    if fmt != "table" or out:
        write_table(run.results, fmt if fmt != "table" or not out else "csv", out)
    if fmt == "table":
        print_prompt(run, "sample", limit, shown_all=out is not None)
    scored = "all library scores cached" if run.computed_sets == 0 else f"ssGSEA on {run.computed_sets} set(s)"
    click.echo(f"run {run.run_id}: {run.results.num_rows} measured scores, {scored}, {run.seconds:.2f}s",
               err=fmt != "table")


@click.command("map")
@click.argument("sample")
@click.option("--genes", "prompts", multiple=True, required=True, metavar="PROMPT",
              help="As for `hquery prompt`; one PNG per gene set.")
@knn_options
@neighbour_options
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="PNG path [default: SAMPLE_GENESET.png]; with several gene sets, a folder.")
@store_option
def tile_map(sample, prompts, k, tau, match, neighbours_where, out, store_path_) -> None:
    """Draw a slide's tile-level scores for a gene set as a heatmap over the slide (PNG)."""
    store = open_store(store_path_)
    gene_sets = resolve_prompts(store, prompts)
    run = run_prompt(store, gene_sets, level="tile", knn=soft_knn(k, tau),
                     neighbours=neighbour_rule(match, neighbours_where), samples=[sample])
    for gs in gene_sets:
        name = f"{sample}_{gs.name.replace(':', '_').replace(',', '_')}.png"
        path = (out / name if len(gene_sets) > 1 else out) if out else Path(name)
        render_tile_map(store, sample, run.results, gs.name, path)
        click.echo(f"{gs.name}: {path}")
    click.echo(f"run {run.run_id}: {run.results.num_rows} tile scores")


COMMANDS = [index, prompt, score, tile_map]
