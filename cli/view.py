"""``hquery view``: the store in a browser."""

from __future__ import annotations

import click

from hquery.cli.options import open_store, store_option
from hquery.viewer import serve, viewer_access, viewer_url


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the default serves this machine only; any other needs the token).")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option("--token", envvar="HQUERY_VIEW_TOKEN", default=None,
              help="The token every API call must carry ($HQUERY_VIEW_TOKEN); beyond loopback a random one is "
                   "made and printed when none is given.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Another host name users reach this machine by (a DNS alias); repeat for more.")
@store_option
def view(host, port, token, allowed_hosts, store_path_) -> None:
    """A local web viewer: slides (search, filter, sort by a gene set), deep zoom, tile-score heatmaps with
    dispersion; typed gene lists are scored in the background."""
    store = open_store(store_path_)
    access = viewer_access(host, token=token, extra_hosts=allowed_hosts)
    click.echo(f"hquery viewer on {viewer_url(host, port, access)}  (store {store.root}; Ctrl-C stops it)")
    if access.token:
        click.echo("  every API call needs the token: open that URL, or send Authorization: Bearer TOKEN", err=True)
    serve(store, host=host, port=port, access=access)


COMMANDS = [view]
