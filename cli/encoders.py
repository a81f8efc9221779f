"""``hquery encoders list``: the pathology foundation models hquery knows by name, and their weights here."""

from __future__ import annotations

import json

import click

from hquery.cli.options import format_option
from hquery.cli.render import print_rows
from hquery.ingest.foundation_models import weights_status


@click.group()
def encoders() -> None:
    """Image encoders: the named pathology foundation models and their conventions."""


@encoders.command("list")
@format_option
def list_encoders(fmt) -> None:
    """Each named model: embedding size, the µm/px and tile it reads, its licence, and whether its weights are
    in the local Hugging Face cache."""
    status = weights_status()
    if fmt == "json":
        click.echo(json.dumps([{"name": s.model.name, "hub": s.model.hub, "library": s.model.library,
                                "dim": s.model.dim, "mpp": s.model.mpp, "tile_size": s.model.tile_size,
                                "input_size": s.model.input_size, "pooling": s.model.pooling,
                                "access": s.model.access, "weights": str(s.weights) if s.weights else None,
                                "runnable": s.runnable} for s in status], indent=1))
        return
    print_rows(["name", "dim", "µm/px", "tile px", "pooling", "hub", "weights here", "access"],
               [(s.model.name, str(s.model.dim), f"{s.model.mpp:g}", f"{s.model.tile_size} -> {s.model.input_size}",
                 s.model.pooling, s.model.hub,
                 ("cached" if s.weights else "no") + ("" if s.runnable else f" ({s.model.library} not installed)"),
                 s.model.access) for s in status])
    click.echo("use: hquery ingest ... --encoder NAME (the hub) or --encoder 'NAME?weights=PATH' (a checkpoint or a "
               "hub snapshot folder, offline); weights-free: he-features")


COMMANDS = [encoders]
