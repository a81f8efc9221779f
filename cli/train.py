"""``hquery train align|peka|histoprism|predictor``: one subcommand per kind of model."""

from __future__ import annotations

import click

from hquery.cli.options import (
    collection_option,
    device_option,
    epochs_option,
    open_store,
    quiet_option,
    resolve_device,
    seed_option,
    store_option,
    workers_option,
)
from hquery.cli.render import (
    HISTOPRISM_COLUMNS,
    HISTOPRISM_NAMES,
    PEKA_COLUMNS,
    RECALL_COLUMNS,
    adapter_rows,
    histoprism_rows,
    print_rows,
    recall_rows,
)
from hquery.progress import progress_bars
from hquery.training.predictor import train_predictor


mixed_resolution_option = click.option(
    "--mixed-resolution", is_flag=True,
    help="Train on slides tiled at different µm per pixel (refused by default: their embeddings mean different things).")


@click.group()
def train() -> None:
    """Fit a model on the store's pairs and record it as a version."""


@train.command()
@click.option("--folds", type=int, default=None, help="Patient-level k-fold cross-validation first (e.g. 5).")
@click.option("--level", type=click.Choice(["slide", "tile"]), default="slide", show_default=True)
@click.option("--dim", type=int, default=256, show_default=True, help="Aligned space dimension.")
@click.option("--epochs", type=int, default=None,
              help="The most epochs (early stopping) [default: 300; 30 with --adapt-to].")
@click.option("--type-conditioned/--no-type-conditioned", "type_conditioned", default=True, show_default=True,
              help="The image head reads each slide's cancer type beside its embedding.")
@click.option("--adapt-to", metavar="COHORT", help="Adapt the current model to a new site instead: warm-started from "
              "its heads, trained on COHORT's pairs only for a short schedule (--epochs, default 30).")
@mixed_resolution_option
@seed_option
@workers_option
@device_option("cpu")
@quiet_option
@store_option
@click.pass_context
def align(ctx, folds, level, dim, epochs, type_conditioned, adapt_to, mixed_resolution, seed, workers, device, quiet,
          store_path_) -> None:
    """The projection heads that align H&E and RNA embeddings (the retrieval model)."""
    from hquery.training.alignment_trainer import ADAPT_EPOCHS, train_alignment
    from hquery.training.heads import AlignmentConfig

    if adapt_to:
        fixed = [f"--{name.replace('_', '-')}" for name in ("dim", "type_conditioned")
                 if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
        if fixed:
            raise click.UsageError(f"{' and '.join(fixed)} cannot change when adapting: the architecture is the "
                                   "current model's")
    config = AlignmentConfig(dim=dim, seed=seed, condition_on_type=type_conditioned,
                             max_epochs=epochs or (ADAPT_EPOCHS if adapt_to else AlignmentConfig.max_epochs))
    with progress_bars(not quiet and bool(folds)) as progress:
        advance = progress(f"{folds}-fold cross-validation", folds) if folds else None
        report = train_alignment(open_store(store_path_), folds=folds, config=config, level=level,
                                 device=resolve_device(device), on_fold=(lambda i: advance(1)) if advance else None,
                                 workers=workers, adapt_to=adapt_to, mixed_resolution=mixed_resolution)
    adapted = f", adapted from {report.adapted_from} to {adapt_to}" if report.adapted_from else ""
    click.echo(f"model {report.version}: {report.n_pairs} {level} pairs from {report.n_patients} patients, "
               f"{report.epochs} epochs{adapted}, {report.seconds:.1f}s; now the current {level} model")
    if report.cv:
        print_rows(RECALL_COLUMNS, recall_rows(report.cv.as_dict()))


@train.command()
@click.option("--adapter-kind", type=click.Choice(["miss", "lora"]), default="miss", show_default=True,
              help="MiSS (block-affine, the paper's Bone) or LoRA.")
@click.option("--rank", type=int, default=16, show_default=True, help="Adapter block size or rank.")
@click.option("--backbone", metavar="SPEC", help="The timm encoder to adapt [default: the store's image encoder], "
              "e.g. demo-vit for a store embedded with he-features.")
@click.option("--epochs", type=int, default=None, help="Epochs [default: 5].")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="First compare None, LoRA and MiSS by a linear probe on held-out patients.")
@seed_option
@device_option("cpu")
@quiet_option
@store_option
def peka(adapter_kind, rank, backbone, epochs, compare, seed, device, quiet, store_path_) -> None:
    """A PEKA adapter of the image backbone, distilled from the RNA teacher (then: hquery embed)."""
    from hquery.training.peka import PEKAConfig
    from hquery.training.peka_trainer import train_peka

    config = PEKAConfig(method=adapter_kind, rank=rank, seed=seed, **({"epochs": epochs} if epochs else {}))
    steps = config.epochs + (3 if compare else 0)
    with progress_bars(not quiet) as progress:
        advance = progress(f"PEKA ({adapter_kind}): {'compare, then ' if compare else ''}fit", steps)
        report = train_peka(open_store(store_path_), config, compare=compare, device=resolve_device(device),
                            backbone=backbone,
                            on_step=lambda name: advance(1))
    click.echo(f"adapter {report.version}: {adapter_kind}, {report.trainable_fraction * 100:.1f}% of the backbone "
               f"trainable, {report.n_tiles} tiles ({report.target} teacher) from {report.n_patients} patients, "
               f"loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f}, {report.seconds:.1f}s; "
               "embed the slides with it: hquery embed")
    if report.comparison:
        held = report.comparison[0]
        click.echo(f"linear probe (HEST protocol) on {held.n_tiles} tiles of {held.n_patients} patients no adapter saw, "
                   "mean ± sd over 5 patient-level folds:")
        print_rows(PEKA_COLUMNS, adapter_rows(report.comparison))
        if held.n_tiles < 200:
            click.echo(f"note: each probe fold fits PCA(256) and a nearly unregularised ridge on ~{held.n_tiles * 4 // 5} "
                       "tiles; with so few it overfits, and these PCCs are mostly noise")


@train.command()
@click.option("--panel", default="hvg:2000", show_default=True,
              help="The genes it predicts: hvg:N (most variable) or collection:NAME.")
@click.option("--folds", type=int, default=5, show_default=True,
              help="Patient-level folds of the cross-validation against ridge; 0 skips it.")
@click.option("--cross-attention/--no-cross-attention", "conditioning", default=True, show_default=True,
              help="Condition on the cancer type (the cross-validation always reports both).")
@click.option("--positions", is_flag=True, help="Add a 2-D sinusoidal encoding of tile positions.")
@epochs_option
@mixed_resolution_option
@seed_option
@workers_option
@quiet_option
@store_option
def histoprism(panel, folds, conditioning, positions, epochs, mixed_resolution, seed, workers, quiet,
               store_path_) -> None:
    """HistoPrism, which predicts expression from a slide's tiles and its cancer type (for prompt --method histoprism)."""
    from hquery.training.histoprism import HistoPrismConfig
    from hquery.training.histoprism_trainer import train_histoprism

    config = HistoPrismConfig(conditioning=conditioning, positional=positions, seed=seed,
                              **({"max_epochs": epochs} if epochs else {}))
    collection = panel.split(":", 1)[1] if panel.startswith("collection:") else "hallmark"
    with progress_bars(not quiet) as progress:
        advance = progress(f"HistoPrism: {folds}-fold cross-validation with the ablation, then fit" if folds else
                           "HistoPrism: fit", 2 * folds + 1)
        report = train_histoprism(open_store(store_path_), panel, config, folds=folds or None, collection=collection,
                                  workers=workers, on_fit=lambda: advance(1), mixed_resolution=mixed_resolution)
    click.echo(f"histoprism {report.version}: {report.n_genes} genes ({panel}) from {report.n_slides} slides of "
               f"{report.n_patients} patients ({report.n_spot_tiles} tiles with spot expression), "
               f"{report.history['epochs']} epochs, {report.seconds:.1f}s; now the current one")
    if report.cv:
        click.echo(f"held-out Pearson r per gene (mean ± sd over {folds} patient-level folds) and GPC "
                   f"(mean over {collection} pathways and cancer types; per pathway: hquery eval compare):")
        print_rows(HISTOPRISM_COLUMNS, histoprism_rows(report.cv.summary(), report.coherence))
        methods = ("histoprism", "no_conditioning", "ridge_type")
        print_rows(["cancer type"] + [f"GPC {level} {HISTOPRISM_NAMES[m].strip()}" for level in report.coherence
                                      for m in methods],
                   [(t, *(f"{report.coherence[level][m][t]:.3f}" for level in report.coherence for m in methods))
                    for t in report.coherence["slide"]["histoprism"] if t != "all"])


@train.command()
@collection_option
@seed_option
@store_option
def predictor(collection, seed, store_path_) -> None:
    """The MLP from aligned slide embeddings to a collection's scores (for prompt --method mlp)."""
    fitted = train_predictor(open_store(store_path_), collection, seed=seed)
    click.echo(f"predictor {fitted.version}: {fitted.n_gene_sets} {collection} scores from {fitted.n_slides} "
               f"slides aligned by {fitted.model_version}, {fitted.seconds:.1f}s; now the current one")


COMMANDS = [train]
