"""The ``hquery`` command line: one module per command group; each command parses, calls one library
function and renders what it returns.

Heavy libraries (torch, timm, faiss) are imported only inside the commands that
need them, so ``hquery --help`` and a cached prompt start fast.
"""

from __future__ import annotations

import sys

import click

from hquery import __version__
from hquery.cli import clinical, demo, encoders, evaluate, export, ingest, prompt, refresh, store, train, view
from hquery.cli.render import hint
from hquery.errors import HqueryError
from hquery.store.disk import is_disk_full


class HqueryGroup(click.Group):
    """Turns every expected failure (an :class:`~hquery.errors.HqueryError`) into one clear line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HqueryError as exc:
            click.secho(f"error: {exc}{hint(exc.needs, **exc.context)}",
                        fg="red", err=True)
            sys.exit(1)
        except OSError as exc:  # a full disk outside a store's write (an --out file, a stage): said, not a traceback
            if not is_disk_full(exc):
                raise
            where = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
            click.secho(f"error: the disk is full{where}: {exc}; free space on it and run the command again",
                        fg="red", err=True)
            sys.exit(1)


@click.group(cls=HqueryGroup)
@click.version_option(__version__, prog_name="hquery")
def main() -> None:
    """Ask an H&E slide a molecular question.

    hquery keeps H&E and RNA-seq embeddings in Lance tables and everything else
    in a DuckDB catalog (the *store*), aligns the two modalities, and scores
    gene-set prompts on each slide's RNA neighbours.
    """


for group in (store, ingest, encoders, train, prompt, evaluate, clinical, export, view, refresh, demo):
    for command in group.COMMANDS:
        main.add_command(command)

__all__ = ["main"]
