"""``hquery export qupath|h5ad|report``: prompt scores for QuPath (GeoJSON), scanpy/squidpy (h5ad) and a browser."""

from __future__ import annotations

from pathlib import Path

import click

from hquery.cli.options import (MethodChoice, knn_options, neighbour_options, neighbour_rule, open_store,
                                renamed_command, sample_list, soft_knn, store_option)
from hquery.cli.prompt import genes_option
from hquery.export import export_h5ad, export_qupath, write_report
from hquery.genesets import resolve_prompts

method_option = click.option("--method", type=MethodChoice(), default="auto", show_default=True,
                             help="As for `hquery prompt`.")


@click.group()
def export() -> None:
    """Write prompt scores where QuPath, scanpy and a browser read them (qupath and h5ad record a prompt run;
    report renders one)."""


@export.command("qupath")
@click.argument("sample")
@genes_option
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for SAMPLE.geojson.")
@method_option
@knn_options
@neighbour_options
@store_option
def export_qupath_command(sample, prompts, out, method, k, tau, match, neighbours_where, store_path_) -> None:
    """SAMPLE's tiles as QuPath detections (GeoJSON, level-0 pixels), each gene set's score and dispersion as
    measurements: File > Import objects from file, on the same slide."""
    store = open_store(store_path_)
    done = export_qupath(store, sample, resolve_prompts(store, prompts), out, method=method, knn=soft_knn(k, tau),
                         neighbours=neighbour_rule(match, neighbours_where))
    click.echo(f"{done.path}: {done.n_tiles} tiles x {len(done.gene_sets)} gene set(s) (run {done.run_id})")


@export.command("h5ad")
@genes_option
@click.option("--collection", help="Every gene set of a collection, e.g. hallmark.")
@click.option("--level", type=click.Choice(["slide", "tile"]), default="slide", show_default=True)
@click.option("--cohort", help="Only slides of this cohort.")
@click.option("--samples", help="Only these sample ids (comma-separated).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The .h5ad file.")
@method_option
@knn_options
@neighbour_options
@store_option
def export_h5ad_command(prompts, collection, level, cohort, samples, out, method, k, tau, match, neighbours_where,
                        store_path_) -> None:
    """Slides (or tiles) x gene sets as AnnData: scores in X, dispersion and effective K as layers, tile centres in
    obsm['spatial'], the run's provenance in uns['hquery']."""
    store = open_store(store_path_)
    done = export_h5ad(store, resolve_prompts(store, prompts, collection), out, level=level, cohort=cohort,
                       samples=sample_list(samples), method=method, knn=soft_knn(k, tau),
                       neighbours=neighbour_rule(match, neighbours_where))
    click.echo(f"{done.path}: {done.n_obs} {done.level}s x {done.n_vars} gene sets (run {done.run_id})")


@export.command("report")
@click.argument("run_id", required=False)
@click.option("--last", is_flag=True, help="The newest prompt run.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The HTML file.")
@store_option
def report(run_id, last, out, store_path_) -> None:
    """One self-contained HTML page for prompt run RUN_ID (or --last): provenance, gene sets and their held-out R²,
    scores by cancer type, the score table, tile heatmaps of the top and bottom slides."""
    if bool(run_id) == last:
        raise click.UsageError("give a RUN_ID or --last (one of them)")
    done = write_report(open_store(store_path_), run_id, out)
    click.echo(f"{done.path}: run {done.run_id}, {done.n_rows} scores, {done.n_figures} figure(s)")


COMMANDS = [export, renamed_command(report, "report", "export report")]
