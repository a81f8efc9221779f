"""``hquery eval recall|spectrum|compare|transfer|adapt``: how well the recorded models and the routes do on held-out patients."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import click

from hquery.cli.options import (
    collection_option,
    folds_option,
    format_option,
    knn_options,
    neighbour_options,
    neighbour_rule,
    open_store,
    quiet_option,
    seed_option,
    soft_knn,
    store_option,
    workers_option,
)
from hquery.cli.render import HISTOPRISM_NAMES, RECALL_COLUMNS, print_rows, recall_rows, spectrum_table
from hquery.evaluation.recall import recall_summary
from hquery.progress import progress_bars
from hquery.retrieval.routes import label, short_label



@click.group("eval")
def evaluate() -> None:
    """Cross-validated accuracy: retrieval recall, the predictability spectrum, the routes side by side."""


@evaluate.command()
@click.option("--model", "version", help="Model version [default: the current slide model].")
@format_option
@store_option
def recall(version, fmt, store_path_) -> None:
    """A model's cross-validated Recall@K, MRR and ranks, with the ridge and chance baselines."""
    version, summary = recall_summary(open_store(store_path_), version)
    if fmt == "json":
        click.echo(json.dumps({"model": version, "metrics": summary}, indent=2))
        return
    click.echo(f"model {version}")
    print_rows(RECALL_COLUMNS, recall_rows(summary))


@evaluate.command()
@collection_option
@folds_option
@knn_options
@neighbour_options
@click.option("--plot", type=click.Path(path_type=Path), help="Also write the spectrum PNG here; "
              "it is always kept as artifacts/evals/EVAL_ID/spectrum.png in the store.")
@workers_option
@format_option
@quiet_option
@store_option
def spectrum(collection, folds, k, tau, match, neighbours_where, plot, workers, fmt, quiet, store_path_) -> None:
    """Which gene sets of a collection H&E predicts: held-out R² per set by Soft-kNN, an MLP and the ridge+type
    floor, cross-validated."""
    from hquery.evaluation.spectrum import evaluate_prompts, plot_spectrum

    with progress_bars(not quiet) as progress:
        advance = progress(f"{collection} spectrum ({folds}-fold cross-validation)", folds)
        result = evaluate_prompts(open_store(store_path_), collection, folds=folds, knn=soft_knn(k, tau),
                                  neighbours=neighbour_rule(match, neighbours_where), workers=workers, on_fold=lambda i: advance(1))
    png = plot_spectrum(result, plot) if plot else result.plot
    if fmt == "json":
        click.echo(json.dumps({"eval_id": result.eval_id, "results": result.rows,
                               "dispersion_quintiles": result.calibration, "plot": str(png)}, indent=1))
        return
    names = list(dict.fromkeys(r["gene_set"] for r in result.rows))
    click.echo(f"{collection}: held-out prediction of {len(names)} gene sets on {result.n_slides} paired slides, "
               f"{result.n_folds} patient-level folds, neighbours by {result.neighbours.describe()} "
               f"(eval {result.eval_id}, {result.seconds:.0f}s)")
    print_rows(*spectrum_table(result, collection))
    click.echo("kNN: Soft-kNN, R² after a line fitted on the training folds; floor: ridge on the slide embedding + "
               "cancer-type one-hot;\nens: mean of kNN and floor; auto: per set, the route best on the other folds "
               "(auto takes: the route a prompt will use); rT: r with each cancer type's mean removed")
    click.echo("held-out error by Soft-kNN dispersion (both in SDs of each set's true score):")
    print_rows(["dispersion quintile", "mean dispersion", "mean |error|", "n"],
               [(r["quintile"], f"{r['dispersion_z']:.3f}", f"{r['abs_error_z']:.3f}", r["n"])
                for r in result.calibration])
    for note in result.notes:
        click.secho(f"note: {note}", fg="yellow", err=True)
    click.echo(f"plot: {png}")


@evaluate.command()
@collection_option
@folds_option
@knn_options
@neighbour_options
@click.option("--plot", type=click.Path(path_type=Path), help="Also write the routes PNG here.")
@click.option("--epochs", type=int, default=None, help="The most epochs of each HistoPrism fit [default: 60].")
@workers_option
@format_option
@quiet_option
@store_option
def compare(collection, folds, k, tau, match, neighbours_where, plot, epochs, workers, fmt, quiet, store_path_) -> None:
    """The routes side by side on the same folds: Soft-kNN, the MLP and the ridge+type floor against HistoPrism."""
    from hquery.evaluation.compare import compare_routes, compared_routes
    from hquery.training.histoprism import HistoPrismConfig

    with progress_bars(not quiet) as progress:
        advance = progress(f"{collection}: spectrum and HistoPrism, {folds}-fold cross-validation", 3 * folds)
        comparison = compare_routes(open_store(store_path_), collection, folds=folds, knn=soft_knn(k, tau),
                                    neighbours=neighbour_rule(match, neighbours_where),
                                    config=HistoPrismConfig(max_epochs=epochs) if epochs else None, workers=workers,
                                    on_step=lambda step: advance(1))
    png = Path(shutil.copyfile(comparison.plot, plot)) if plot else comparison.plot
    if fmt == "json":
        click.echo(json.dumps({"eval_id": comparison.eval_id, "gene_sets": comparison.rows,
                               "hvg50_pcc": comparison.expression, "plot": str(png)}, indent=1))
        return
    click.echo(f"{collection}: held-out ssGSEA of {len(comparison.rows)} gene sets on {comparison.n_slides} paired "
               f"slides, the same {folds} patient-level folds for every route (eval {comparison.eval_id}, "
               f"{comparison.seconds:.0f}s)")
    routes = {route: short_label(route) for route in compared_routes()}
    metrics = (("r2", "R²"), ("r", "r"), ("r_type", "rT"))
    print_rows(["gene set", *(f"{label} {m}" for _, m in metrics for label in routes.values()), "HP GPC",
                "auto takes"],
               [(r["gene_set"].removeprefix(f"{collection.upper()}_"),
                 *(f"{r[f'{route}_{key}']:.3f}" for key, _ in metrics for route in routes),
                 f"{r['histoprism_gpc']:.3f}", short_label(r["route"])) for r in comparison.rows])
    click.echo("kNN: Soft-kNN and HP: HistoPrism, R² after a line fitted on the other folds; floor: ridge+type; "
               "ens: kNN and floor averaged;\nauto: each set's route chosen on the other folds (auto takes: the "
               "route a prompt will use); rT: r with each cancer type's mean removed")
    click.echo("top-50 HVG Pearson r of the predicted expression, mean ± sd over folds:")
    print_rows(["method", "slide", "spot"], [
        (HISTOPRISM_NAMES[m], *(f"{comparison.expression[m][level]['mean']:.3f} ± "
                                f"{comparison.expression[m][level]['sd']:.3f}" if level in comparison.expression[m]
                                else "" for level in ("slide", "spot")))
        for m in HISTOPRISM_NAMES if m in comparison.expression])
    click.echo(f"plot: {png}")


@evaluate.command()
@click.option("--train", "train_cohorts", required=True, metavar="COHORT[,COHORT]",
              help="Cohorts whose pairs fit the heads.")
@click.option("--test", "test_cohort", required=True, metavar="COHORT", help="The cohort scored, never trained on.")
@click.option("--library", "library_cohorts", metavar="COHORT[,COHORT]",
              help="Cohorts whose RNA profiles are the neighbours [default: every cohort but --test].")
@collection_option
@folds_option
@knn_options
@neighbour_options
@click.option("--epochs", type=int, default=None, help="The most epochs of each alignment fit [default: 300].")
@click.option("--histoprism/--no-histoprism", default=None,
              help="Score HistoPrism too [default: when the store serves one, with its settings].")
@workers_option
@format_option
@store_option
def transfer(train_cohorts, test_cohort, library_cohorts, collection, folds, k, tau, match, neighbours_where, epochs,
             histoprism, workers, fmt, store_path_) -> None:
    """Fit on some cohorts, test on another, beside the test cohort's own cross-validation: the generalisation gap."""
    from hquery.evaluation.transfer import evaluate_transfer
    from hquery.training.heads import AlignmentConfig

    def cohorts(text):
        return [c.strip() for c in text.split(",") if c.strip()] if text else None

    report = evaluate_transfer(open_store(store_path_), cohorts(train_cohorts), test_cohort,
                               library=cohorts(library_cohorts), collection=collection, folds=folds,
                               knn=soft_knn(k, tau), neighbours=neighbour_rule(match, neighbours_where),
                               config=AlignmentConfig(max_epochs=epochs) if epochs else AlignmentConfig(),
                               histoprism=histoprism, workers=workers)
    means = report.means()
    if fmt == "json":
        click.echo(json.dumps({**{f.name: getattr(report, f.name) for f in dataclasses.fields(report)},
                               "means": means}, indent=1, default=str))
        return
    click.echo(f"trained on {', '.join(report.train_cohorts)} ({report.n_train} pairs), tested on "
               f"{report.test_cohort} ({report.n_test} pairs), neighbours from {', '.join(report.library_cohorts)} "
               f"({report.n_library} profiles); in-cohort: {folds}-fold CV within {report.test_cohort}")
    rows = []
    for direction in ("he_to_rna", "rna_to_he"):
        for metric in ("recall@1", "recall@10", "mrr"):
            cell = {s: report.recall[s] for s in ("transfer", "in_cohort")}
            transfer_v, own = cell["transfer"]["aligned"][direction][metric], cell["in_cohort"]["aligned"][direction][metric]
            rows.append((direction, metric, f"{transfer_v:.3f}", f"{cell['transfer']['ridge'][direction][metric]:.3f}",
                         _number(cell['transfer']['chance'][direction].get(metric)), f"{own:.3f}",
                         f"{own - transfer_v:+.3f}"))
    print_rows(["direction", "metric", "transfer", "ridge (transfer)", "chance", "in-cohort", "gap"], rows)
    print_rows(["route", "transfer R²", "r", "rT", "in-cohort R²", "r", "rT", "R² gap"],
               [(label(route), *(f"{means[s][route][m]:.3f}" for s in ("transfer", "in_cohort")
                                  for m in ("r2_calibrated", "pearson_r", "r_within_type")),
                 f"{means['in_cohort'][route]['r2_calibrated'] - means['transfer'][route]['r2_calibrated']:+.3f}")
                for route in means["transfer"]])
    click.echo(f"means over the {collection} sets; rT: r with each cancer type's mean removed; gap: in-cohort minus "
               "transfer")
    click.echo(f"recorded as {report.transfer_id} (transfer_runs, transfer_results)")
    for note in report.notes[:5]:
        click.secho(f"note: {note}", fg="yellow", err=True)


@evaluate.command()
@click.option("--cohort", required=True, metavar="COHORT", help="The new site's cohort, with some slide/RNA pairs.")
@click.option("--fractions", default="0,0.05,0.1,0.25,0.5", show_default=True, metavar="F[,F]",
              help="Shares of the cohort's patients adapted on; the test set is 1 - the largest of them.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Draws of patients per fraction.")
@click.option("--epochs", type=int, default=None, help="The warm start's short schedule [default: 30].")
@collection_option
@knn_options
@neighbour_options
@seed_option
@format_option
@quiet_option
@store_option
def adapt(cohort, fractions, repeats, epochs, collection, k, tau, match, neighbours_where, seed, fmt, quiet,
          store_path_) -> None:
    """How much of a new site it takes: the served heads fine-tuned on growing fractions of its patients, against
    heads trained from scratch on the same pairs (+ PNG)."""
    from hquery.evaluation.adapt import evaluate_adaptation
    from hquery.training.alignment_trainer import ADAPT_EPOCHS

    try:
        shares = [float(f) for f in fractions.split(",") if f.strip()]
    except ValueError:
        raise click.BadParameter(f"{fractions!r} is not a comma-separated list of numbers", param_hint="--fractions")
    with progress_bars(not quiet) as progress:
        advance = progress(f"adapting to {cohort}", len(set(shares)) * repeats)
        report = evaluate_adaptation(open_store(store_path_), cohort, shares, repeats=repeats, collection=collection,
                                     epochs=epochs or ADAPT_EPOCHS, knn=soft_knn(k, tau),
                                     neighbours=neighbour_rule(match, neighbours_where), seed=seed,
                                     on_point=lambda: advance(1))
    curves = {(start, metric): report.curve(start, metric)
              for start in ("warm", "scratch", "ridge", "chance", "ridge_type")
              for metric in ("he_to_rna:recall@1", "he_to_rna:recall@10", "r2", "source:he_to_rna:recall@10")}
    if fmt == "json":
        click.echo(json.dumps({"adapt_id": report.adapt_id, "base_model": report.base_model, "cohort": cohort,
                               "n_test_patients": report.n_test_patients, "plot": str(report.plot),
                               "curves": {f"{s}:{m}": {str(f): v for f, v in c.items()}
                                          for (s, m), c in curves.items() if c}}, indent=1))
        return
    click.echo(f"adapting {report.base_model} to {cohort}: {report.n_test_patients} of its {report.n_patients} "
               f"patients held out in each of {repeats} draws, mean ± sd over the draws ({report.seconds:.0f}s)")

    def cell(start, metric, f):
        value = curves[start, metric].get(f)
        return "" if value is None else f"{value[0]:.3f} ± {value[1]:.3f}"

    print_rows(["fraction", "pairs", "R@1 warm", "R@10 warm", "R@10 scratch", "R@10 ridge", "R² warm", "R² scratch",
                "R² floor", "R@10 base cohorts"],
               [(f"{f:g}", f"{_adapted_pairs(report, f):.0f}", cell("warm", "he_to_rna:recall@1", f),
                 cell("warm", "he_to_rna:recall@10", f), cell("scratch", "he_to_rna:recall@10", f),
                 cell("ridge", "he_to_rna:recall@10", f), cell("warm", "r2", f), cell("scratch", "r2", f),
                 cell("ridge_type", "r2", f), cell("warm", "source:he_to_rna:recall@10", f))
                for f in report.fractions])
    chance = curves["chance", "he_to_rna:recall@10"]
    click.echo(f"R@K: H&E -> RNA among the test patients' pairs (chance R@10 {next(iter(chance.values()))[0]:.3f}); "
               f"R²: calibrated Soft-kNN (the floor: ridge+type), mean over the {collection} sets;\nR@10 base cohorts: "
               "the warm start among as many of the base model's own cohorts' patients (pairs it was trained on), "
               "what adapting costs them")
    click.echo(f"recorded as {report.adapt_id} (adaptation_runs, adaptation_results, view adaptation_curve); "
               f"plot: {report.plot}")
    for note in report.notes[:5]:
        click.secho(f"note: {note}", fg="yellow", err=True)


def _adapted_pairs(report, fraction: float) -> float:
    counts = [r["n_adapt_pairs"] for r in report.rows if r["fraction"] == fraction and r["start"] == "warm"]
    return sum(counts) / len(counts) if counts else 0.0


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


COMMANDS = [evaluate]
