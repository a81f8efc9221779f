"""``hquery view``: the store in a browser."""

from __future__ import annotations

import click

from hquery.cli.options import open_store, store_option
from hquery.viewer import serve


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the default serves this machine only).")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@store_option
def view(host, port, store_path_) -> None:
    """A local web viewer: slides (search, filter, sort by a gene set), deep zoom, tile-score heatmaps with
    dispersion; typed gene lists are scored in the background."""
    store = open_store(store_path_)
    click.echo(f"hquery viewer on http://{host}:{port}/  (store {store.root}; Ctrl-C stops it)")
    serve(store, host=host, port=port)


COMMANDS = [view]
