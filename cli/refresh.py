"""``hquery refresh``: retrain on new pairs, and serve the candidate only if it retrieves as well."""

from __future__ import annotations

import time

import click

from hquery.cli.options import (
    device_option,
    neighbour_options,
    neighbour_rule,
    open_store,
    resolve_device,
    seed_option,
    store_option,
)


@click.command()
@click.option("--force", is_flag=True, help="Retrain even when no pair is new.")
@click.option("--peka", is_flag=True, help="First fit a PEKA adapter and re-embed the slides with it.")
@click.option("--tolerance", default="auto", show_default=True,
              help="How far the candidate's held-out recall@10 may fall below the service model's and still be "
                   "promoted: a number, or auto (two standard errors of the per-query difference).")
@click.option("--eval-fraction", type=float, default=0.5, show_default=True,
              help="Fraction of the new patients held out to score both models.")
@click.option("--every", metavar="INTERVAL",
              help="Repeat forever at this interval (30m, 6h, 1d); safe to kill at any moment.")
@neighbour_options
@seed_option
@device_option("cpu")
@store_option
def refresh(force, peka, tolerance, eval_fraction, every, match, neighbours_where, seed, device, store_path_) -> None:
    """Retrain on new pairs; promote and reindex only if held-out recall@10 does not fall beyond the tolerance."""
    from hquery.pipelines.refresh import parse_interval
    from hquery.pipelines.refresh import refresh as run_refresh
    from hquery.training.heads import AlignmentConfig
    from hquery.training.peka import PEKAConfig

    try:
        interval = parse_interval(every) if every else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None
    if tolerance != "auto":
        try:
            tolerance = float(tolerance)
        except ValueError:
            raise click.BadParameter(f"{tolerance!r} is neither a number nor auto", param_hint="--tolerance") from None
    store = open_store(store_path_)
    while True:
        report = run_refresh(store, force=force, tolerance=tolerance, eval_fraction=eval_fraction,
                             config=AlignmentConfig(seed=seed), peka=PEKAConfig(seed=seed) if peka else None,
                             device=resolve_device(device), neighbours=neighbour_rule(match, neighbours_where),
                             echo=lambda line: click.echo(f"  {line}", err=True))
        click.echo(report.summary())
        if interval is None:
            return
        click.echo(f"next refresh in {every} (Ctrl-C stops; the store stays at the last promoted version)", err=True)
        time.sleep(interval)


COMMANDS = [refresh]
