"""The ``hquery`` command line.

Heavy libraries (torch, timm, faiss) are imported only inside the commands that
need them, so ``hquery --help`` and ``hquery status`` start fast.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from hquery import __version__
from hquery.store import MARKER, Store, StoreError, default_store_path

FORMATS = ("table", "csv", "json", "parquet")
RECALL_COLUMNS = ["direction", "metric", "aligned", "ridge (no alignment)", "chance", "vs ridge", "vs chance"]


class HqueryGroup(click.Group):
    """Turns expected failures (bad input, a missing store) into one clear line and exit code 1."""

    def invoke(self, ctx):
        from hquery.ingest.errors import IngestError
        from hquery.retrieval.library import GeneSetTooSmall
        from hquery.retrieval.prompts import PromptError

        try:
            return super().invoke(ctx)
        except (StoreError, IngestError, PromptError, GeneSetTooSmall) as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)


store_option = click.option(
    "--store",
    "store_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Store directory [env HQUERY_STORE; default ./hquery-store].",
)


quiet_option = click.option("--quiet", is_flag=True, help="No progress bars.")


def device_option(default: str):
    return click.option("--device", default=default, show_default=True, help="cpu, cuda, or auto (CUDA when present).")


def _store_path(path: Path | None) -> Path:
    return path if path is not None else default_store_path()


@click.group(cls=HqueryGroup)
@click.version_option(__version__, prog_name="hquery")
def main() -> None:
    """Ask an H&E slide a molecular question.

    hquery keeps H&E and RNA-seq embeddings in Lance tables and everything else
    in a DuckDB catalog (the *store*), aligns the two modalities, and scores
    gene-set prompts on each slide's RNA neighbours.
    """


@main.command()
@store_option
def init(store_path: Path | None) -> None:
    """Create a store (with the Hallmark gene sets and gene aliases)."""
    from hquery.ingest.genesets import add_builtin_gene_data

    path = _store_path(store_path)
    existed = (path / MARKER).exists()
    store = Store.init(path)
    add_builtin_gene_data(store)
    click.echo(f"{'store already exists at' if existed else 'created store at'} {path}")


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path), required=False)
@click.option("--expression", type=click.Path(path_type=Path), help="Bulk expression file (samples as rows).")
@click.option("--spots", type=click.Path(path_type=Path), help="Tile-level expression: sample_id, x, y, genes.")
@click.option("--name", help="Cohort name [default: the manifest's file name].")
@click.option("--encoder", help="Image encoder spec, e.g. timm:vit_small_patch16_224, hf-hub:ORG/NAME, demo-vit.")
@click.option("--rna-encoder", help="RNA encoder spec [default: the store's, else pca].")
@click.option("--units", type=click.Choice(["counts", "tpm", "log"]), default="counts", show_default=True)
@click.option("--tile-size", type=int, default=224, show_default=True, help="Tile size for whole-slide images (px).")
@click.option("--magnification", type=float, default=20.0, show_default=True, help="Magnification for WSI tiling.")
@click.option("--reembed", is_flag=True,
              help="Instead of a MANIFEST: embed every stored slide again with a PEKA adapter into new tables.")
@click.option("--adapter", help="PEKA adapter version for --reembed [default: the store's current one].")
@click.option("--batch-size", type=int, default=64, show_default=True)
@device_option("auto")
@quiet_option
@store_option
def ingest(manifest, expression, spots, name, encoder, rna_encoder, units, tile_size, magnification, reembed,
           adapter, batch_size, device, quiet, store_path) -> None:
    """Ingest a cohort MANIFEST (CSV) with its slides and expression, or --reembed the stored slides."""
    from hquery.ingest import ingest_cohort, reembed_slides
    from hquery.ingest.slides import TilingOptions
    from hquery.progress import progress_bars

    if reembed == (manifest is not None):
        raise click.UsageError("give a MANIFEST to ingest, or --reembed (not both)")
    store = Store.open(_store_path(store_path))
    with progress_bars(not quiet) as progress:
        if reembed:
            click.echo(reembed_slides(store, adapter, batch_size=batch_size, device=device,
                                      progress=progress).summary())
            return
        report = ingest_cohort(
            store, manifest, expression=expression, spots=spots, name=name, encoder=encoder,
            rna_encoder=rna_encoder, units=units, tiling=TilingOptions(tile_size, magnification),
            batch_size=batch_size, device=device, progress=progress,
        )
    click.echo(report.summary())


@main.group()
def genesets() -> None:
    """List and import gene sets (prompts)."""


@genesets.command("list")
@click.option("--collection", help="Only this collection (e.g. hallmark).")
@store_option
def genesets_list(collection, store_path) -> None:
    """List the gene sets in the store."""
    from hquery.ingest.genesets import list_gene_sets

    rows = list_gene_sets(Store.open(_store_path(store_path)), collection)
    _print_rows(["name", "collection", "source", "n_genes", "description"], rows)


@genesets.command("add")
@click.argument("gmt", type=click.Path(path_type=Path))
@click.option("--collection", help="Collection name [default: from the file name].")
@store_option
def genesets_add(gmt, collection, store_path) -> None:
    """Import gene sets from a GMT file."""
    from hquery.ingest.genesets import add_gene_sets, read_gmt

    sets = read_gmt(gmt, collection=collection)
    add_gene_sets(Store.open(_store_path(store_path)), sets)
    click.echo(f"added {len(sets)} gene sets to collection {sets[0].collection}")


@main.group()
def genes() -> None:
    """Gene symbols and aliases."""


@genes.command("import-aliases")
@click.argument("hgnc_tsv", type=click.Path(path_type=Path))
@store_option
def genes_import_aliases(hgnc_tsv, store_path) -> None:
    """Import alias and previous symbols from HGNC's hgnc_complete_set.txt."""
    from hquery.ingest.genes import aliases_table, read_hgnc_aliases

    aliases = read_hgnc_aliases(hgnc_tsv)
    store = Store.open(_store_path(store_path))
    with store.transaction() as txn:
        txn.insert("gene_aliases", aliases_table(aliases, f"HGNC ({hgnc_tsv.name})"))
    click.echo(f"imported {len(aliases)} aliases")


@main.command()
@click.option("--size", type=click.Choice(["small", "default"]), default="default", show_default=True)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=Path("hquery-demo"),
              show_default=True, help="Where the synthetic cohort files are written.")
@click.option("--seed", type=int, default=0, show_default=True)
@quiet_option
@store_option
@click.pass_context
def demo(ctx, size, data_dir, seed, quiet, store_path) -> None:
    """Generate the synthetic demo cohort, ingest it, train, index, ask a first prompt, evaluate the spectrum,
    compare PEKA adapters, then ingest a second batch and refresh."""
    from hquery.demo import DemoFiles, run_demo
    from hquery.training.train import recall_table

    trained, _ = run_demo(_store_path(store_path), data_dir, size=size, seed=seed, progress=not quiet, echo=click.echo)
    click.echo("held-out retrieval, mean ± sd over 5 patient-level folds (hquery eval prints it again):")
    _print_rows(RECALL_COLUMNS, recall_table(trained.cv.as_dict()))
    click.echo("\n$ hquery prompt --genes HALLMARK_G2M --limit 10")
    ctx.invoke(prompt, prompts=("HALLMARK_G2M",), limit=10, store_path=store_path)
    click.echo("\n$ hquery eval --prompts hallmark")
    ctx.invoke(evaluate, collection="hallmark", quiet=quiet, store_path=store_path)
    click.echo("\n$ hquery train --peka")
    ctx.invoke(train, peka=True, quiet=quiet, store_path=store_path)
    files = DemoFiles.at(data_dir)
    if files.later_manifest is not None:
        click.echo(f"\n$ hquery ingest {files.later_manifest} --expression {files.later_expression} --name demo")
        ctx.invoke(ingest, manifest=files.later_manifest, expression=files.later_expression, name="demo", quiet=quiet,
                   store_path=store_path)
        click.echo("\n$ hquery refresh")
        ctx.invoke(refresh, store_path=store_path)


@main.command()
@click.option("--folds", type=int, default=None, help="Patient-level k-fold cross-validation first (e.g. 5).")
@click.option("--level", type=click.Choice(["slide", "tile"]), default="slide", show_default=True)
@click.option("--dim", type=int, default=256, show_default=True, help="Aligned space dimension.")
@click.option("--epochs", type=int, default=None,
              help="Epochs: the most for the alignment (early stopping; default 300), exactly for --peka (default 5).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=None,
              help="Processes fitting folds side by side [default: the CPUs available]; results do not depend on it.")
@click.option("--predictor", metavar="COLLECTION",
              help="Instead: fit the MLP from aligned slide embeddings to COLLECTION's scores (for prompt --method mlp).")
@click.option("--peka", is_flag=True,
              help="Instead: fit a PEKA adapter of the image backbone to the RNA teacher (then: ingest --reembed).")
@click.option("--method", type=click.Choice(["miss", "lora"]), default="miss", show_default=True,
              help="PEKA adapter: MiSS (block-affine, the paper's) or LoRA.")
@click.option("--rank", type=int, default=16, show_default=True, help="PEKA adapter block size or rank.")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="With --peka: first compare None, LoRA and MiSS by a linear probe on held-out patients.")
@click.option("--histoprism", is_flag=True,
              help="Instead: fit HistoPrism, which predicts expression from a slide's tiles and its cancer type "
                   "(for prompt --method histoprism); cross-validated (5 folds unless --folds) against ridge.")
@click.option("--genes", "panel", default="hvg:2000", show_default=True, metavar="PANEL",
              help="With --histoprism: the genes it predicts, hvg:N (most variable) or collection:NAME.")
@click.option("--cross-attention/--no-cross-attention", "conditioning", default=True, show_default=True,
              help="With --histoprism: condition on the cancer type (the cross-validation always reports both).")
@click.option("--positions", is_flag=True, help="With --histoprism: add a 2-D sinusoidal encoding of tile positions.")
@device_option("cpu")
@quiet_option
@store_option
def train(folds, level, dim, epochs, seed, workers, predictor, peka, method, rank, compare, histoprism, panel,
          conditioning, positions, device, quiet, store_path) -> None:
    """Train the projection heads that align H&E and RNA embeddings (or a PEKA adapter, the MLP predictor, or
    HistoPrism)."""
    if histoprism:
        _train_histoprism(Store.open(_store_path(store_path)), panel, folds, epochs, seed, conditioning, positions,
                          workers, quiet)
        return
    if peka:
        _train_peka(Store.open(_store_path(store_path)), method, rank, epochs, seed, compare, _device(device), quiet)
        return
    if predictor:
        from hquery.training.predictor import train_predictor

        fitted = train_predictor(Store.open(_store_path(store_path)), predictor, seed=seed)
        click.echo(f"predictor {fitted.version}: {fitted.n_gene_sets} {predictor} scores from {fitted.n_slides} "
                   f"slides aligned by {fitted.model_version}, {fitted.seconds:.1f}s; now the current one")
        return
    from hquery.progress import progress_bars
    from hquery.training import AlignmentConfig, train_alignment
    from hquery.training.train import recall_table

    store = Store.open(_store_path(store_path))
    config = AlignmentConfig(dim=dim, seed=seed)
    if epochs:
        config = dataclasses.replace(config, max_epochs=epochs)
    with progress_bars(not quiet and bool(folds)) as progress:
        advance = progress(f"{folds}-fold cross-validation", folds) if folds else None
        report = train_alignment(store, folds=folds, config=config, level=level, device=_device(device),
                                 on_fold=(lambda i: advance(1)) if advance else None, workers=workers)
    click.echo(f"model {report.version}: {report.n_pairs} {level} pairs from {report.n_patients} patients, "
               f"{report.epochs} epochs, {report.seconds:.1f}s; now the current {level} model")
    if report.cv:
        _print_rows(RECALL_COLUMNS, recall_table(report.cv.as_dict()))


PEKA_COLUMNS = ["features", "trainable", "PCC top-50 HVG (mean ± sd)", "vs None", "time"]


def _train_peka(store, method, rank, epochs, seed, compare, device, quiet) -> None:
    from hquery.training.adapt import comparison_table, train_peka
    from hquery.training.peka import PEKAConfig

    config = PEKAConfig(method=method, rank=rank, seed=seed)
    if epochs:
        config = dataclasses.replace(config, epochs=epochs)
    steps = config.epochs + (3 if compare else 0)
    from hquery.progress import progress_bars

    with progress_bars(not quiet) as progress:
        advance = progress(f"PEKA ({method}): {'compare, then ' if compare else ''}fit", steps)
        report = train_peka(store, config, compare=compare, device=device, on_step=lambda name: advance(1))
    click.echo(f"adapter {report.version}: {method}, {report.trainable_fraction * 100:.1f}% of the backbone trainable, "
               f"{report.n_tiles} tiles ({report.target} teacher) from {report.n_patients} patients, "
               f"loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f}, {report.seconds:.1f}s; "
               "embed the slides with it: hquery ingest --reembed")
    if report.comparison:
        held = report.comparison[0]
        click.echo(f"linear probe (HEST protocol) on {held.n_tiles} tiles of {held.n_patients} patients no adapter saw, "
                   "mean ± sd over 5 patient-level folds:")
        _print_rows(PEKA_COLUMNS, comparison_table(report.comparison))
        if held.n_tiles < 200:
            click.echo(f"note: each probe fold fits PCA(256) and a nearly unregularised ridge on ~{held.n_tiles * 4 // 5} "
                       "tiles; with so few it overfits, and these PCCs are mostly noise")


HISTOPRISM_COLUMNS = ["method", "slide PCC HVG-50", "slide PCC all", "spot PCC HVG-50", "spot PCC all",
                      "GPC slide", "GPC spot"]
HISTOPRISM_NAMES = {"histoprism": "HistoPrism", "no_conditioning": "  without cross-attention",
                    "ridge": "ridge on frozen features", "ridge_type": "ridge + cancer type"}


def _train_histoprism(store, panel, folds, epochs, seed, conditioning, positions, workers, quiet) -> None:
    from hquery.progress import progress_bars
    from hquery.training.expression_model import train_histoprism
    from hquery.training.histoprism import HistoPrismConfig

    config = HistoPrismConfig(conditioning=conditioning, positional=positions, seed=seed)
    if epochs:
        config = dataclasses.replace(config, max_epochs=epochs)
    folds = 5 if folds is None else folds
    with progress_bars(not quiet) as progress:
        advance = progress(f"HistoPrism: {folds}-fold cross-validation with the ablation, then fit" if folds else
                           "HistoPrism: fit", 2 * folds + 1)
        collection = panel.split(":", 1)[1] if panel.startswith("collection:") else "hallmark"
        report = train_histoprism(store, panel, config, folds=folds or None, collection=collection, workers=workers,
                                  on_fit=lambda: advance(1))
    click.echo(f"histoprism {report.version}: {report.n_genes} genes ({panel}) from {report.n_slides} slides of "
               f"{report.n_patients} patients ({report.n_spot_tiles} tiles with spot expression), "
               f"{report.history['epochs']} epochs, {report.seconds:.1f}s; now the current one")
    if report.cv:
        click.echo(f"held-out Pearson r per gene (mean ± sd over {folds} patient-level folds) and GPC "
                   f"(mean over {collection} pathways and cancer types; per pathway: hquery eval --compare):")
        _print_rows(HISTOPRISM_COLUMNS, histoprism_rows(report.cv.summary(), report.coherence))
        _print_rows(["cancer type"] + [f"GPC {level} {HISTOPRISM_NAMES[m].strip()}" for level in report.coherence
                                       for m in ("histoprism", "no_conditioning", "ridge_type")],
                    [(t, *(f"{report.coherence[level][m][t]:.3f}" for level in report.coherence
                           for m in ("histoprism", "no_conditioning", "ridge_type")))
                     for t in report.coherence["slide"]["histoprism"] if t != "all"])


def histoprism_rows(summary: dict, coherence: dict) -> list[tuple]:
    def cell(method, level, metric):
        value = summary.get(method, {}).get(level, {}).get(metric)
        return f"{value['mean']:.3f} ± {value['sd']:.3f}" if value else ""

    def gpc(method, level):
        value = coherence.get(level, {}).get(method, {}).get("all")
        return f"{value:.3f}" if value is not None else ""

    return [(name, cell(m, "slide", "pcc_hvg50"), cell(m, "slide", "pcc_all"), cell(m, "spot", "pcc_hvg50"),
             cell(m, "spot", "pcc_all"), gpc(m, "slide"), gpc(m, "spot")) for m, name in HISTOPRISM_NAMES.items()]


@main.command()
@click.option("--force", is_flag=True, help="Retrain even when no pair is new.")
@click.option("--peka", is_flag=True, help="First fit a PEKA adapter and re-embed the slides with it.")
@click.option("--tolerance", default="auto", show_default=True,
              help="How far the candidate's held-out recall@10 may fall below the service model's and still be promoted: "
                   "a number, or auto (two standard errors of the per-query difference).")
@click.option("--eval-fraction", type=float, default=0.5, show_default=True,
              help="Fraction of the new patients held out to score both models.")
@click.option("--every", metavar="INTERVAL", help="Repeat forever at this interval (30m, 6h, 1d); safe to kill at any moment.")
@click.option("--seed", type=int, default=0, show_default=True)
@device_option("cpu")
@store_option
def refresh(force, peka, tolerance, eval_fraction, every, seed, device, store_path) -> None:
    """Retrain on new pairs; promote and reindex only if held-out recall@10 does not fall beyond the tolerance."""
    import time

    from hquery.training import AlignmentConfig
    from hquery.training.peka import PEKAConfig
    from hquery.training.refresh import parse_interval
    from hquery.training.refresh import refresh as run_refresh

    try:
        interval = parse_interval(every) if every else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None
    if tolerance != "auto":
        try:
            tolerance = float(tolerance)
        except ValueError:
            raise click.BadParameter(f"{tolerance!r} is neither a number nor auto", param_hint="--tolerance") from None
    store = Store.open(_store_path(store_path))
    while True:
        report = run_refresh(store, force=force, tolerance=tolerance, eval_fraction=eval_fraction,
                             config=AlignmentConfig(seed=seed), peka=PEKAConfig(seed=seed) if peka else None,
                             device=_device(device), echo=lambda line: click.echo(f"  {line}", err=True))
        click.echo(report.summary())
        if interval is None:
            return
        click.echo(f"next refresh in {every} (Ctrl-C stops; the store stays at the last promoted version)", err=True)
        time.sleep(interval)


@main.command("eval")
@click.option("--model", "version", help="Model version [default: the current slide model].")
@click.option("--prompts", "collection", metavar="COLLECTION",
              help="Instead: the predictability spectrum of a gene-set collection (e.g. hallmark), cross-validated.")
@click.option("--folds", type=int, default=5, show_default=True, help="Patient-level folds (--prompts).")
@click.option("--k", "k", type=int, default=32, show_default=True, help="Soft-kNN neighbours (--prompts).")
@click.option("--tau", type=float, default=0.05, show_default=True, help="Soft-kNN temperature (--prompts).")
@click.option("--plot", type=click.Path(path_type=Path), help="Also write the spectrum PNG here (--prompts); "
              "it is always kept as artifacts/evals/EVAL_ID/spectrum.png in the store.")
@click.option("--compare", is_flag=True,
              help="Instead: the routes side by side on the same folds, Soft-kNN and MLP against HistoPrism, "
                   "for --prompts COLLECTION (default hallmark).")
@click.option("--epochs", type=int, default=None, help="The most epochs of each HistoPrism fit (--compare; default 60).")
@click.option("--workers", type=int, default=None, help="Processes fitting folds side by side.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@quiet_option
@store_option
def evaluate(version, collection, folds, k, tau, plot, compare, epochs, workers, fmt, quiet, store_path) -> None:
    """Print a model's cross-validated Recall@K, MRR and ranks, with baselines.

    With --prompts COLLECTION: for held-out paired slides, predict every gene set
    of the collection (Soft-kNN and an MLP) and compare with the ssGSEA of their
    own RNA; R² per gene set, sorted, plus error by dispersion quintile.

    With --compare: the same, and HistoPrism (predicting the collection's genes)
    on the same folds: R², r and GPC per gene set, and top-50 HVG PCC.
    """
    from hquery.training.train import recall_table

    if compare:
        _compare_routes(Store.open(_store_path(store_path)), collection or "hallmark", folds, k, tau, plot, epochs,
                        workers, fmt, quiet)
        return
    if collection:
        _evaluate_prompts(Store.open(_store_path(store_path)), collection, folds, k, tau, plot, workers, fmt, quiet)
        return
    store = Store.open(_store_path(store_path))
    version = version or store.setting("alignment_model")
    if not version:
        raise StoreError("no alignment model yet; run `hquery train --folds 5`")
    summary: dict = {}
    for method, direction, metric, mean, sd, n in store.query("model_metrics_summary", [version]):
        summary.setdefault(method, {}).setdefault(direction, {})[metric] = {"mean": mean, "sd": sd or 0.0, "n_folds": n}
    if not summary:
        raise StoreError(f"model {version} has no cross-validation metrics; train it with --folds")
    if fmt == "json":
        click.echo(json.dumps({"model": version, "metrics": summary}, indent=2))
        return
    click.echo(f"model {version}")
    _print_rows(RECALL_COLUMNS, recall_table(summary))


def _evaluate_prompts(store, collection, folds, k, tau, plot, workers, fmt, quiet) -> None:
    from hquery.progress import progress_bars
    from hquery.retrieval.softknn import SoftKNN
    from hquery.retrieval.spectrum import evaluate_prompts, plot_spectrum

    with progress_bars(not quiet) as progress:
        advance = progress(f"{collection} spectrum ({folds}-fold cross-validation)", folds)
        spectrum = evaluate_prompts(store, collection, folds=folds, knn=SoftKNN(k, tau), workers=workers,
                                    on_fold=lambda i: advance(1))
    png = plot_spectrum(spectrum, plot) if plot else spectrum.plot
    if fmt == "json":
        click.echo(json.dumps({"eval_id": spectrum.eval_id, "results": spectrum.rows,
                               "dispersion_quintiles": spectrum.calibration, "plot": str(png)}, indent=1))
        return
    by = {(r["gene_set"], r["method"]): r for r in spectrum.rows}
    names = list(dict.fromkeys(r["gene_set"] for r in spectrum.rows))
    click.echo(f"{collection}: held-out prediction of {len(names)} gene sets on {spectrum.n_slides} paired slides, "
               f"{spectrum.n_folds} patient-level folds (eval {spectrum.eval_id}, {spectrum.seconds:.0f}s)")
    _print_rows(["gene set", "Soft-kNN r", "R²", "R² calibrated", "MLP r", "MLP R²"], [
        (n.removeprefix(f"{collection.upper()}_"), f"{by[n, 'softknn']['pearson_r']:.3f}", f"{by[n, 'softknn']['r2']:.3f}",
         f"{by[n, 'softknn']['r2_calibrated']:.3f}", f"{by[n, 'mlp']['pearson_r']:.3f}", f"{by[n, 'mlp']['r2']:.3f}")
        for n in names])
    click.echo("held-out error by Soft-kNN dispersion (both in SDs of each set's true score):")
    _print_rows(["dispersion quintile", "mean dispersion", "mean |error|", "n"],
                [(r["quintile"], f"{r['dispersion_z']:.3f}", f"{r['abs_error_z']:.3f}", r["n"])
                 for r in spectrum.calibration])
    click.echo(f"plot: {png}")


def _compare_routes(store, collection, folds, k, tau, plot, epochs, workers, fmt, quiet) -> None:
    import shutil

    from hquery.training.histoprism import HistoPrismConfig

    from hquery.progress import progress_bars
    from hquery.retrieval.compare import compare_routes
    from hquery.retrieval.softknn import SoftKNN

    with progress_bars(not quiet) as progress:
        advance = progress(f"{collection}: spectrum and HistoPrism, {folds}-fold cross-validation", 3 * folds)
        comparison = compare_routes(store, collection, folds=folds, knn=SoftKNN(k, tau),
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
    _print_rows(["gene set", "Soft-kNN R²", "MLP R²", "HistoPrism R²", "Soft-kNN r", "MLP r", "HistoPrism r",
                 "HistoPrism GPC"],
                [(r["gene_set"].removeprefix(f"{collection.upper()}_"),
                  *(f"{r[key]:.3f}" for key in ("softknn_r2", "mlp_r2", "histoprism_r2", "softknn_r", "mlp_r",
                                                "histoprism_r", "histoprism_gpc"))) for r in comparison.rows])
    click.echo("top-50 HVG Pearson r of the predicted expression, mean ± sd over folds:")
    _print_rows(["method", "slide", "spot"], [
        (HISTOPRISM_NAMES[m], *(f"{comparison.expression[m][level]['mean']:.3f} ± "
                                f"{comparison.expression[m][level]['sd']:.3f}" if level in comparison.expression[m]
                                else "" for level in ("slide", "spot")))
        for m in HISTOPRISM_NAMES if m in comparison.expression])
    click.echo(f"plot: {png}")


@main.command()
@click.option("--kind", type=click.Choice(["auto", "flat", "hnsw", "ivf"]), default="auto", show_default=True,
              help="auto: exact (flat) up to --approximate-above vectors, HNSW beyond.")
@click.option("--approximate-above", type=int, default=200_000, show_default=True)
@click.option("--model", "version", help="Alignment model version [default: the current one].")
@store_option
def index(kind, approximate_above, version, store_path) -> None:
    """Project the RNA library with the alignment model and build the FAISS index."""
    from hquery.retrieval import build_index

    report = build_index(Store.open(_store_path(store_path)), kind=kind, approximate_above=approximate_above,
                         model_version=version)
    recall = f", recall@10 vs exact {report.recall_vs_exact:.3f}" if report.recall_vs_exact is not None else ""
    click.echo(f"index {report.version}: {report.n_vectors} RNA profiles x {report.dim} dims, {report.kind}"
               f"{recall}, {'GPU' if report.on_gpu else 'CPU'}, {report.seconds:.1f}s; now current")


@main.command()
@click.option("--genes", "prompts", multiple=True, metavar="PROMPT",
              help="A gene-set name (or unambiguous prefix: HALLMARK_G2M, G2M), GENE,GENE,... or @FILE "
                   "(.gmt or a list of symbols). Repeat for several.")
@click.option("--collection", help="Every gene set of a collection, e.g. hallmark.")
@click.option("--level", type=click.Choice(["slide", "tile"]), default="slide", show_default=True)
@click.option("--k", "k", type=int, default=32, show_default=True, help="Neighbours retrieved per query.")
@click.option("--tau", type=float, default=0.05, show_default=True, help="Softmax temperature of the weights.")
@click.option("--aggregate", type=click.Choice(["score", "expression"]), default="score", show_default=True,
              help="Average the neighbours' scores, or their expression and then score it.")
@click.option("--method", type=click.Choice(["softknn", "mlp", "histoprism"]), default="softknn", show_default=True,
              help="Soft-kNN over the RNA library, the collection's trained MLP (`hquery train --predictor`), or "
                   "ssGSEA on the expression HistoPrism predicts (`hquery train --histoprism`).")
@click.option("--cohort", help="Only slides of this cohort.")
@click.option("--samples", help="Only these sample ids (comma-separated).")
@click.option("--where", help="Only slides whose samples row matches this SQL predicate, e.g. \"cancer_type = 'BRCA'\".")
@click.option("--min-genes", type=int, default=5, show_default=True,
              help="A gene set with fewer genes in the library is an error.")
@click.option("--limit", type=int, default=20, show_default=True, help="Rows shown per gene set in table format.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Write every result row to this file.")
@store_option
def prompt(prompts, collection, level, k, tau, aggregate, method, cohort, samples, where, min_genes, limit, fmt, out,
           store_path) -> None:
    """Score gene-set prompts on every slide (or tile) by Soft-kNN over the aligned RNA library (or by --method).

    Each run is recorded in the catalog: `hquery sql "select * from prompt_results"`.
    """
    from hquery.retrieval.prompt import run_prompt
    from hquery.retrieval.prompts import resolve_prompts
    from hquery.retrieval.softknn import SoftKNN

    store = Store.open(_store_path(store_path))
    gene_sets = resolve_prompts(store, prompts, collection)
    try:
        knn = SoftKNN(k, tau)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    run = run_prompt(store, gene_sets, level=level, knn=knn, aggregate=aggregate, method=method, cohort=cohort,
                     samples=[s.strip() for s in samples.split(",") if s.strip()] if samples else None,
                     where=where, min_genes=min_genes)
    if fmt != "table" or out:
        _write_table(run.results, fmt if fmt != "table" or not out else "csv", out)
    if fmt == "table":
        _print_prompt(run, level, limit, shown_all=out is not None)
    for note in run.notes:
        click.secho(f"note: {note}", fg="yellow", err=True)
    cached = ("scored by the trained MLP" if method == "mlp" else
              "ssGSEA on HistoPrism's predicted expression" if method == "histoprism" else
              "all library scores cached" if run.computed_sets == 0 else f"ssGSEA on {run.computed_sets} set(s)")
    click.echo(f"run {run.run_id}: {run.results.num_rows} scores, {cached}, {run.seconds:.2f}s", err=fmt != "table")


@main.command("map")
@click.argument("sample")
@click.option("--genes", "prompts", multiple=True, required=True, metavar="PROMPT",
              help="As for `hquery prompt`; one PNG per gene set.")
@click.option("--k", "k", type=int, default=32, show_default=True)
@click.option("--tau", type=float, default=0.05, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="PNG path [default: SAMPLE_GENESET.png]; with several gene sets, a folder.")
@store_option
def tile_map(sample, prompts, k, tau, out, store_path) -> None:
    """Draw a slide's tile-level scores for a gene set as a heatmap over the slide (PNG)."""
    from hquery.retrieval.prompt import run_prompt
    from hquery.retrieval.prompts import resolve_prompts
    from hquery.retrieval.softknn import SoftKNN
    from hquery.retrieval.tilemap import render_tile_map

    store = Store.open(_store_path(store_path))
    gene_sets = resolve_prompts(store, prompts)
    run = run_prompt(store, gene_sets, level="tile", knn=SoftKNN(k, tau), samples=[sample])
    for gs in gene_sets:
        name = f"{sample}_{gs.name.replace(':', '_').replace(',', '_')}.png"
        path = (out / name if len(gene_sets) > 1 else out) if out else Path(name)
        render_tile_map(store, sample, run.results, gs.name, path)
        click.echo(f"{gs.name}: {path}")
    click.echo(f"run {run.run_id}: {run.results.num_rows} tile scores")


def _print_prompt(run, level: str, limit: int, shown_all: bool) -> None:
    import pyarrow.compute as pc

    for match in run.matches:
        found = f"{match.n_found}/{run.n_members[match.name]} genes in the library"
        missing = f" (missing: {', '.join(match.missing[:8])}{' ...' if len(match.missing) > 8 else ''})" \
            if match.missing else ""
        rows = run.results.filter(pc.equal(run.results["gene_set"], match.name)).sort_by([("score", "descending")])
        click.echo(f"{match.name}: {found}{missing}; {rows.num_rows} {level}s, highest score first")
        columns = ["sample_id"] + (["tile_index"] if level == "tile" else []) + [
            "cancer_type", "score", "dispersion", "effective_k"]
        shown = rows.slice(0, limit).select(columns).to_pylist()
        _print_rows(["sample", "tile", "cancer type", "score", "dispersion", "effective K"] if level == "tile" else
                    ["sample", "cancer type", "score", "dispersion", "effective K"],
                    [tuple(f"{v:.3f}" if isinstance(v, float) else v for v in r.values()) for r in shown])
        if rows.num_rows > limit and not shown_all:
            click.echo(f"... {rows.num_rows - limit} more; --out FILE or --format csv for all")


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@store_option
def status(fmt, store_path) -> None:
    """Cohorts, counts, encoders, Lance versions and store size."""
    from hquery.store import directory_size

    store = Store.open(_store_path(store_path))
    counts = dict(zip(["samples", "slides", "tiles", "genes", "gene_sets", "ingests"], store.query("store_counts")[0]))
    cohorts = store.query("cohort_summary")
    encoders = store.query("encoders")
    tables = store.lance_tables()
    size = directory_size(store.root)
    if fmt == "json":
        click.echo(json.dumps({
            "store": str(store.root), "size_bytes": size, "counts": counts,
            "cohorts": [dict(zip(["cohort", "samples", "patients", "pairs", "reference", "query", "cancer_types"], c)) for c in cohorts],
            "encoders": [dict(zip(["version", "kind", "spec", "dim"], e[:4])) for e in encoders],
            "lance_tables": {t.name: {"version": t.version, "rows": t.n_rows} for t in tables.values()},
            "settings": {k: store.setting(k) for k in ("image_encoder", "rna_encoder")},
        }, indent=2))
        return
    click.echo(f"store {store.root}  ({size / 2**20:.1f} MiB)")
    click.echo("  " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    _print_rows(["cohort", "samples", "patients", "pairs", "reference", "query", "cancer types"], cohorts)
    _print_rows(["encoder", "kind", "spec", "dim", "created"], encoders)
    _print_rows(["lance table", "version", "rows"], [(t.name, t.version, t.n_rows) for t in tables.values()])


@main.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Write to a file instead of stdout.")
@store_option
def sql(query, fmt, out, store_path) -> None:
    """Run a read-only SQL QUERY over the catalog, its views and the Lance tables."""

    _write_table(Store.open(_store_path(store_path)).sql(query), fmt, out)


def _write_table(table, fmt: str, out: Path | None) -> None:
    """An Arrow table as an aligned table, CSV, JSON or Parquet, to ``out`` or standard output."""
    import polars as pl

    frame = pl.from_arrow(table) if table.num_columns else pl.DataFrame()
    if fmt == "parquet":
        if out is None:
            raise click.UsageError("--format parquet needs --out FILE")
        frame.write_parquet(out)
    elif fmt == "csv":
        text = frame.write_csv()
        out.write_text(text) if out else click.echo(text, nl=False)
    elif fmt == "json":
        text = json.dumps(frame.to_dicts(), default=str, indent=1)
        out.write_text(text) if out else click.echo(text)
    else:
        with pl.Config(tbl_rows=50, tbl_cols=20, fmt_str_lengths=60):
            text = str(frame)
        out.write_text(text) if out else click.echo(text)


@main.command()
def doctor() -> None:
    """Check the installation: library versions, GPUs, OpenSlide."""
    from importlib import metadata

    ok = True
    for dist in ("torch", "torchvision", "timm", "peft", "faiss-cpu", "faiss-gpu-cu12", "pylance", "duckdb",
                 "polars", "pyarrow", "scikit-learn", "gseapy", "openslide-python", "openslide-bin", "anndata"):
        try:
            click.echo(f"{dist:18} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            if dist in ("torch", "timm", "peft", "pylance", "duckdb"):
                ok = False
            click.echo(f"{dist:18} not installed")
    import faiss
    import torch

    gpus = faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0
    click.echo(f"faiss GPUs         {gpus}{'' if hasattr(faiss, 'StandardGpuResources') else ' (CPU build)'}")
    click.echo(f"torch CUDA         {torch.cuda.is_available()} ({torch.cuda.device_count()} devices)")
    try:
        import openslide

        click.echo(f"OpenSlide library  {openslide.__library_version__}")
    except Exception as exc:  # missing extra or missing shared library: report, don't fail
        click.echo(f"OpenSlide library  unavailable ({exc}); whole-slide images need pip install 'hquery[wsi]'")
    if not ok:
        sys.exit(1)


def _print_rows(columns: list[str], rows: list[tuple]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=60)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    # off a terminal rich would assume 80 columns and drop columns; pipes get everything
    Console(width=None if sys.stdout.isatty() else 240).print(table)


if __name__ == "__main__":
    main()
