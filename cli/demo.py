"""``hquery demo``: the synthetic cohort through every step a user takes, each printed as its command."""

from __future__ import annotations

from pathlib import Path

import click

from hquery.cli.clinical import archetypes, associate, survival
from hquery.cli.evaluate import adapt, spectrum, transfer
from hquery.cli.export import report
from hquery.cli.ingest import ingest
from hquery.cli.options import quiet_option, store_option, store_path
from hquery.cli.prompt import prompt
from hquery.cli.refresh import refresh
from hquery.cli.render import RECALL_COLUMNS, print_rows, recall_rows
from hquery.cli.train import peka as train_peka
from hquery.ingest.image_encoders import parse_image_encoder


@click.command()
@click.option("--size", type=click.Choice(["small", "default"]), default="default", show_default=True)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=Path("hquery-demo"),
              show_default=True, help="Where the synthetic cohort files are written.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--world", type=click.Choice(["A", "B"]), default="A", show_default=True,
              help="Which synthetic world: A, or B with its own renderer, stain model and program-to-morphology map.")
@click.option("--encoder", help="Image encoder spec for the demo's tiles [default: he-features, chosen by "
              "measurement], e.g. demo-vit or concat:he-features+demo-vit.")
@click.option("--peka/--no-peka", default=True, show_default=True,
              help="Adapt the ViT backbone with PEKA and print the None / LoRA / PEKA table (about 2 of the "
                   "default demo's 7 minutes).")
@quiet_option
@store_option
@click.pass_context
def demo(ctx, size, data_dir, seed, world, encoder, peka, quiet, store_path_) -> None:
    """Generate the synthetic demo cohort, ingest it, train, index, evaluate the spectrum, ask a first prompt
    (each set by the route the spectrum chose), test scores against the clinical columns, compare PEKA adapters,
    ingest a second batch and refresh; then a second hospital arrives: transfer to it, and adapt."""
    from hquery.pipelines.demo import DEMO_ENCODER, run_demo, write_second_site

    encoder = encoder or DEMO_ENCODER
    trained, _, files = run_demo(store_path(store_path_), data_dir, size=size, seed=seed, progress=not quiet,
                                 echo=click.echo, world=world, encoder=encoder)
    click.echo(f"Try: hquery status --store {store_path(store_path_)}")
    click.echo("held-out retrieval, mean ± sd over 5 patient-level folds (hquery eval recall prints it again):")
    print_rows(RECALL_COLUMNS, recall_rows(trained.cv.as_dict()))
    click.echo("\n$ hquery eval spectrum --collection hallmark")
    ctx.invoke(spectrum, collection="hallmark", quiet=quiet, store_path_=store_path_)
    click.echo("\n$ hquery prompt --genes HALLMARK_G2M --limit 10")
    ctx.invoke(prompt, prompts=("HALLMARK_G2M",), limit=10, store_path_=store_path_)
    # the manifest's clinical columns carry built-in associations (demo/cohort.py, _clinical)
    for column in ("pdl1", "negative_control"):
        click.echo(f"\n$ hquery clinic associate --genes INTERFERON_GAMMA --by {column} --source both")
        ctx.invoke(associate, prompts=("INTERFERON_GAMMA",), column=column, source="both", store_path_=store_path_)
    click.echo("\n$ hquery clinic survival --genes G2M --time os_months --event os_event --source both")
    ctx.invoke(survival, prompts=("G2M",), time_column="os_months", event_column="os_event", source="both",
               store_path_=store_path_)
    click.echo("\n$ hquery clinic archetypes --immune INTERFERON_GAMMA --fibrosis EPITHELIAL_MESENCHYMAL")
    ctx.invoke(archetypes, immune="INTERFERON_GAMMA", fibrosis="EPITHELIAL_MESENCHYMAL", store_path_=store_path_)
    if peka:
        backbone = None if parse_image_encoder(encoder).adaptable else "demo-vit"
        click.echo("\n$ hquery train peka" + (f" --backbone {backbone}" if backbone else ""))
        ctx.invoke(train_peka, backbone=backbone, quiet=quiet, store_path_=store_path_)
    if files.later_manifest is not None:
        click.echo(f"\n$ hquery ingest {files.later_manifest} --expression {files.later_expression} --name demo")
        ctx.invoke(ingest, manifest=files.later_manifest, expression=files.later_expression, name="demo", quiet=quiet,
                   store_path_=store_path_)
        click.echo("\n$ hquery refresh")
        ctx.invoke(refresh, store_path_=store_path_)
    site = write_second_site(data_dir, size=size, seed=seed, world=world, progress=not quiet)
    click.echo(f"\nA second hospital sends pairs: its own stain, scanner and case mix ({site.root}).")
    click.echo(f"$ hquery ingest {site.cohort_manifest} --expression {site.cohort_expression} --name site2")
    ctx.invoke(ingest, manifest=site.cohort_manifest, expression=site.cohort_expression, name="site2", quiet=quiet,
               store_path_=store_path_)
    click.echo("\n$ hquery eval transfer --train demo --test site2 --folds 3")
    ctx.invoke(transfer, train_cohorts="demo", test_cohort="site2", folds=3, store_path_=store_path_)
    click.echo("\n$ hquery eval adapt --cohort site2 --fractions 0,0.1,0.25,0.5 --repeats 2")
    ctx.invoke(adapt, cohort="site2", fractions="0,0.1,0.25,0.5", repeats=2, quiet=quiet, store_path_=store_path_)
    page = data_dir / "report.html"
    click.echo(f"\n$ hquery export report --last --out {page}")
    ctx.invoke(report, run_id=None, last=True, out=page, store_path_=store_path_)
    click.echo(f"\nLook at the answers in a browser: hquery view --store {store_path(store_path_)}  "
               f"(then open http://127.0.0.1:8765/); the newest run's report is {page}")


COMMANDS = [demo]
