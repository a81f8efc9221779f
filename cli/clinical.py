"""``hquery clinic``: what a lab asks of its scores next (``associate``, ``survival``, ``archetypes``) and
``map-space``, the picture of the aligned space they come from."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import click

from hquery.cli.options import open_store, renamed_command, store_option
from hquery.cli.prompt import genes_option
from hquery.cli.render import check_out, print_rows
from hquery.errors import PromptError
from hquery.evaluation.archetypes import ARCHETYPES
from hquery.evaluation.archetypes import archetypes as run_archetypes
from hquery.evaluation.association import associate as run_association
from hquery.evaluation.space import map_space
from hquery.evaluation.survival import SPLITS
from hquery.evaluation.survival import survival as run_survival
from hquery.genesets import resolve_prompts


@click.command()
@genes_option
@click.option("--collection", help="Every gene set of a collection, e.g. hallmark.")
@click.option("--by", "column", required=True, metavar="COLUMN",
              help="cohort, cancer_type or a clinical column of the manifest.")
@click.option("--source", type=click.Choice(["predicted", "measured", "both"]), default="predicted",
              show_default=True, help="Scores predicted from the slides, or from the samples' measured RNA.")
@click.option("--within", metavar="COLUMN", help="Test within each value of this column (e.g. cancer_type).")
@click.option("--as", "kind", type=click.Choice(["auto", "categorical", "numeric"]), default="auto",
              show_default=True, help="auto: numeric when every value is a number and there are more than 10.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@store_option
def associate(prompts, collection, column, source, within, kind, fmt, store_path_) -> None:
    """Test gene-set scores against a clinical column: Mann-Whitney, Kruskal-Wallis or Spearman, with BH FDR.

    The newest recorded scores are used (scored now where there are none); the
    results are in `association_results`, the plots in the store's artifacts.
    """
    store = open_store(store_path_)
    report = run_association(store, resolve_prompts(store, prompts, collection), column, source=source,
                             within=within, kind=kind)
    if fmt == "json":
        click.echo(json.dumps({"run_id": report.run_id, "column": report.column, "kind": report.kind,
                               "results": [dataclasses.asdict(r) for r in report.results],
                               "notes": report.notes, "plots": {k: str(v) for k, v in report.plots.items()}},
                              indent=2))
        return
    print_rows(["gene set", "source", "stratum", "test", "n", "statistic", "effect", "p", "q (BH)", "groups"],
               [(r.gene_set.removeprefix("HALLMARK_"), r.source, r.stratum or "all", r.test, r.n,
                 f"{r.statistic:.3g}", f"{r.effect:+.3f} {r.effect_name}", f"{r.p_value:.2g}", f"{r.q_value:.2g}",
                 " ".join(f"{g}:{v['median']:.0f}(n{v['n']})" for g, v in r.groups.items()))
                for r in report.results])
    for note in report.notes:
        click.secho(f"note: {note}", fg="yellow", err=True)
    for name, path in report.plots.items():
        click.echo(f"plot: {path}")
    click.echo(f"run {report.run_id}: {len(report.results)} test(s) of {column!r} ({report.kind})")


@click.command()
@genes_option
@click.option("--collection", help="Every gene set of a collection, e.g. hallmark.")
@click.option("--time", "time_column", required=True, metavar="COLUMN", help="Follow-up time (manifest column).")
@click.option("--event", "event_column", required=True, metavar="COLUMN",
              help="1 where the event happened, 0 where follow-up was censored (manifest column).")
@click.option("--split", type=click.Choice(list(SPLITS)), default="median", show_default=True)
@click.option("--source", type=click.Choice(["predicted", "measured", "both"]), default="predicted",
              show_default=True, help="Scores predicted from the slides, or from the samples' measured RNA.")
@store_option
def survival(prompts, collection, time_column, event_column, split, source, store_path_) -> None:
    """Kaplan-Meier curves by a split of each gene set's score, log-rank p and a Cox hazard ratio per SD."""
    store = open_store(store_path_)
    report = run_survival(store, resolve_prompts(store, prompts, collection), time_column, event_column,
                          source=source, split=split)
    print_rows(["gene set", "source", "patients", "events", "log-rank p", "HR per SD (95% CI)", "Cox p",
                "median survival by group"],
               [(r.gene_set.removeprefix("HALLMARK_"), r.source, r.n, r.n_events, f"{r.logrank_p:.2g}",
                 f"{r.hazard_ratio:.2f} ({r.hr_lower:.2f}-{r.hr_upper:.2f})", f"{r.cox_p:.2g}",
                 " ".join(f"{g}:{'not reached' if v['median_months'] is None else round(v['median_months'], 1)}"
                          for g, v in r.groups.items()))
                for r in report.results])
    for note in report.notes:
        click.secho(f"note: {note}", fg="yellow", err=True)
    for path in report.plots.values():
        click.echo(f"plot: {path}")
    click.echo(f"run {report.run_id}: {len(report.results)} gene set(s) by {time_column}/{event_column}")


@click.command()
@click.option("--immune", required=True, metavar="PROMPT", help="The immune gene set, e.g. INTERFERON_GAMMA.")
@click.option("--fibrosis", required=True, metavar="PROMPT",
              help="The fibrosis gene set, e.g. EPITHELIAL_MESENCHYMAL_TRANSITION.")
@store_option
def archetypes(immune, fibrosis, store_path_) -> None:
    """Tumour-microenvironment archetypes from a median split of two scores, predicted against measured."""
    store = open_store(store_path_)
    sets = [resolve_prompts(store, [prompt]) for prompt in (immune, fibrosis)]
    if any(len(found) != 1 for found in sets):
        raise PromptError("--immune and --fibrosis each name one gene set")
    report = run_archetypes(store, sets[0][0], sets[1][0])
    counts = {src: {a: list(c.values()).count(a) for a in ARCHETYPES} for src, c in report.classes.items()}
    print_rows(["archetype"] + [f"{src} samples" for src in counts],
               [(a, *(counts[src][a] for src in counts)) for a in ARCHETYPES])
    click.echo(f"on the {report.n_compared} samples scored both ways (rows: measured, columns: predicted):")
    print_rows(["measured \\ predicted"] + list(ARCHETYPES),
               [(m, *row.values()) for m, row in report.confusion.items()])
    click.echo(f"accuracy {report.accuracy:.3f}, Cohen's kappa {report.kappa:.3f} (chance agreement is kappa 0); "
               f"run {report.run_id}")


@click.command("map-space")
@click.option("--color", default="cancer_type", show_default=True,
              help="cohort, cancer_type, a clinical column, or a gene set (slides predicted, profiles measured).")
@click.option("--model", "version", help="Alignment model [default: the one behind the current index].")
@click.option("--neighbors", type=click.IntRange(min=2), default=15, show_default=True, help="UMAP's n_neighbors.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Also copy the PNG here.")
@store_option
def map_space_command(color, version, neighbors, seed, out, store_path_) -> None:
    """A UMAP of slides and RNA profiles in the aligned space (PNG; coordinates in space_coordinates)."""
    check_out(out)
    space = map_space(open_store(store_path_), color=color, model_version=version, n_neighbors=neighbors, seed=seed)
    if out:
        shutil.copyfile(space.plot, out)
    for note in space.notes:
        click.secho(f"note: {note}", fg="yellow", err=True)
    n_slides = int((space.modality == "slide").sum())
    click.echo(f"map {space.map_id} of {space.model_version}: {n_slides} slides, {len(space.modality) - n_slides} "
               f"RNA profiles; a slide's own RNA lies {space.pair_distance_ratio:.2f}x as far as another sample's of "
               f"its cancer type (median over {space.n_pairs} pairs; 1 = chance)")
    click.echo(f"plot: {out or space.plot}")


@click.group()
def clinic() -> None:
    """Clinical questions of the scores: associations with a column, survival, archetypes, the aligned space."""


for _command in (associate, survival, archetypes, map_space_command):
    clinic.add_command(_command)

COMMANDS = [clinic, *(renamed_command(c, c.name, f"clinic {c.name}")
                      for c in (associate, survival, archetypes, map_space_command))]
