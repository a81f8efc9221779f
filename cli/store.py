"""``hquery init``, ``status``, ``sql`` and ``doctor``: the store itself and the installation."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from datetime import timedelta

import click

from hquery.cli.options import open_store, store_option, store_path
from hquery.cli.render import FORMATS, check_out, print_rows, write_table
from hquery.gc import DEFAULT_GRACE, DEFAULT_KEEP, collect_garbage, plan_garbage, store_status
from hquery.ingest import init_store
from hquery.ingest.foundation_models import weights_status
from hquery.store import SQL_MEMORY_LIMIT, SQL_TIMEOUT_S
from hquery.store.disk import human_bytes


@click.command()
@store_option
def init(store_path_: Path | None) -> None:
    """Create a store (with the Hallmark gene sets and gene aliases)."""
    path = store_path(store_path_)
    created = init_store(path)
    click.echo(f"{'created store at' if created else 'store already exists at'} {path}")


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@store_option
def status(fmt, store_path_) -> None:
    """Cohorts, counts, encoders, Lance versions, store size and the space `hquery gc` would free."""
    summary = store_status(open_store(store_path_))
    if fmt == "json":
        click.echo(json.dumps(dataclasses.asdict(summary), indent=2, default=str))
        return
    click.echo(f"store {summary.store}  ({summary.size_bytes / 2**20:.1f} MiB)")
    click.echo("  " + ", ".join(f"{v} {k}" for k, v in summary.counts.items()))
    print_rows(["cohort", "samples", "patients", "pairs", "reference", "query", "cancer types"],
               [tuple(c.values()) for c in summary.cohorts])
    print_rows(["encoder", "kind", "spec", "dim", "created"], [tuple(e.values()) for e in summary.encoders])
    print_rows(["lance table", "version", "rows"],
               [(name, t["version"], t["rows"]) for name, t in summary.lance_tables.items()])
    for stage in summary.stages:
        click.echo(f"staged: {stage.key} ({human_bytes(stage.bytes)}, last change {stage.changed_at:%Y-%m-%d %H:%M} "
                   f"UTC): an interrupted --engine ray ingest; the same command resumes it")
    reclaimable = sum(summary.reclaimable.values())
    click.echo(f"reclaimable: {human_bytes(reclaimable)}"
               + (f" ({_by_kind(summary.reclaimable)}); `hquery gc` frees it" if reclaimable else ""))


@click.command()
@click.option("--keep", type=click.IntRange(min=1), default=DEFAULT_KEEP, show_default=True,
              help="The newest versions of each model kind, and of the index, kept even when nothing uses them.")
@click.option("--grace", type=click.FloatRange(min=0), default=DEFAULT_GRACE.total_seconds() / 60,
              show_default=True, help="Minutes a superseded version is kept, for readers that opened it.")
@click.option("--no-compact", is_flag=True, help="Do not compact Lance tables of many fragments.")
@click.option("--dry-run", is_flag=True, help="Say what would go, delete nothing.")
@store_option
def gc(keep, grace, no_compact, dry_run, store_path_) -> None:
    """Delete retired model and index versions, superseded Lance versions and orphaned files.

    A version in use (a pointer, the index's model, a PEKA adapter behind an
    encoder, the data a live model was trained on) is never deleted.
    """
    store, grace = open_store(store_path_), timedelta(minutes=grace)
    if dry_run:
        plan = plan_garbage(store, keep=keep, grace=grace)
        for label, items in (("model versions", plan.retired_models), ("index versions", plan.retired_indexes),
                             ("projected tables", plan.dropped_tables), ("orphaned folders", plan.orphan_artifacts),
                             ("superseded Lance versions", [f"{g.name} {g.versions}" for g in plan.lance if g.versions]),
                             ("stale stages", plan.stale_stages)):
            click.echo(f"{label}: {', '.join(sorted(items)) if items else 'none'}")
        click.echo(f"would free {human_bytes(plan.total_bytes)} ({_by_kind(plan.bytes)})")
        return
    click.echo(collect_garbage(store, keep=keep, grace=grace, compact=not no_compact).summary())


def _by_kind(sizes: dict[str, int]) -> str:
    labels = {"versions": "retired versions", "lance": "superseded Lance versions", "orphans": "orphaned files",
              "stages": "stale stages"}
    return ", ".join(f"{labels[k]} {human_bytes(v)}" for k, v in sizes.items())


@click.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Write to a file instead of stdout.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=SQL_TIMEOUT_S,
              show_default=True, help="Stop the query after this many seconds (every writer's commit waits for a "
                                      "reader).")
@click.option("--memory-limit", default=SQL_MEMORY_LIMIT, show_default=True,
              help="The most memory the query may use, in DuckDB's units (512MB, 4GiB).")
@store_option
def sql(query, fmt, out, timeout_s, memory_limit, store_path_) -> None:
    """Run a read-only SQL QUERY over the catalog, its views and the Lance tables."""
    write_table(open_store(store_path_).sql(query, timeout_s=timeout_s, memory_limit=memory_limit), fmt,
                check_out(out))


REQUIRED = ("torch", "timm", "peft", "pylance", "duckdb")


@click.command()
def doctor() -> None:
    """Check the installation: library versions, GPUs, OpenSlide."""
    from importlib import metadata

    ok = True
    for dist in ("torch", "torchvision", "timm", "peft", "faiss-cpu", "faiss-gpu-cu12", "pylance", "duckdb",
                 "polars", "pyarrow", "scikit-learn", "gseapy", "openslide-python", "openslide-bin", "anndata"):
        try:
            click.echo(f"{dist:18} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            ok = ok and dist not in REQUIRED
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
    cached = [s.model.name for s in weights_status() if s.weights]
    click.echo(f"foundation models  weights cached here: {', '.join(cached) or 'none'} "
               "(hquery encoders list; --encoder 'NAME?weights=PATH' reads them from anywhere)")
    if not ok:
        sys.exit(1)


COMMANDS = [init, status, gc, sql, doctor]
