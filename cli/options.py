"""Options every command group shares, and how they become library arguments."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import click

from hquery.parallel import RayOptions
from hquery.retrieval.neighbours import NeighbourRule
from hquery.retrieval.routes import METHODS
from hquery.retrieval.softknn import SoftKNN
from hquery.store import Store, default_store_path

store_option = click.option(
    "--store",
    "store_path_",
    type=click.Path(path_type=Path),
    default=None,
    help="Store directory [env HQUERY_STORE; default ./hquery-store].",
)

quiet_option = click.option("--quiet", is_flag=True, help="No progress bars.")

seed_option = click.option("--seed", type=int, default=0, show_default=True)

epochs_option = click.option("--epochs", type=int, default=None, help="The most epochs of each fit.")

workers_option = click.option("--workers", type=int, default=None,
                              help="Processes fitting side by side [default: the CPUs available]; "
                                   "results do not depend on it.")

format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True)

folds_option = click.option("--folds", type=int, default=5, show_default=True, help="Patient-level folds.")

collection_option = click.option("--collection", default="hallmark", show_default=True,
                                 help="A gene-set collection (prompt), e.g. hallmark.")


def engine_options(command):
    """``--engine``, ``--address``, ``--workers`` and ``--gpus-per-worker``: where the work runs."""
    for option in reversed([
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="local: in this process; ray: on Ray workers (pip install 'hquery[ray]'). An ingest on "
                          "Ray stages each finished slide, so the same command, killed and run again, resumes."),
        click.option("--address", help="Ray cluster to join: auto (the one this machine is in) or ray://HOST:10001 "
                                       "[default: start a Ray on this machine for the run]."),
        click.option("--workers", "ray_workers", type=int, default=1, show_default=True,
                     help="Ray workers: encoder replicas (each loads the model once), or index shards at a time."),
        click.option("--gpus-per-worker", type=float, default=0.0, show_default=True,
                     help="GPUs each Ray worker holds (0.5: two on one GPU; 0: CPU)."),
    ]):
        command = option(command)
    return command


def ray_engine(engine: str, address: str | None, workers: int, gpus_per_worker: float):
    """The library's ``engine`` argument: ``None`` for local, else :class:`RayOptions`."""
    if engine == "local":
        given = [name for name, value, default in (("--address", address, None), ("--workers", workers, 1),
                                                   ("--gpus-per-worker", gpus_per_worker, 0.0)) if value != default]
        if given:
            raise click.UsageError(f"{', '.join(given)} apply to --engine ray only")
        return None
    return RayOptions(address=address, workers=workers, gpus_per_worker=gpus_per_worker)


def device_option(default: str):
    return click.option("--device", default=default, show_default=True, help="cpu, cuda, or auto (CUDA when present).")


def knn_options(command):
    """``--k`` and ``--tau``: the Soft-kNN neighbours and softmax temperature."""
    command = click.option("--tau", type=float, default=0.05, show_default=True,
                           help="Softmax temperature of the neighbour weights.")(command)
    return click.option("--k", "k", type=int, default=32, show_default=True, help="Neighbours retrieved per query.")(
        command)


def neighbour_options(command):
    """``--match`` and ``--neighbours-where``: which library profiles a query may take as neighbours."""
    command = click.option("--neighbours-where", "neighbours_where", metavar="SQL",
                           help="Only library profiles whose samples row matches this SQL predicate, "
                                "e.g. \"cohort = 'TCGA'\".")(command)
    return click.option("--match", "match", metavar="COL[,COL]|none", default=None,
                        help="Neighbours share the query's values in these manifest columns (cancer_type, cohort "
                             "or a clinical field) where the library holds --k of them [default: cancer_type].")(
        command)


def neighbour_rule(match: str | None, where: str | None):
    """The :class:`~hquery.retrieval.neighbours.NeighbourRule` of ``--match`` and ``--neighbours-where``."""
    return NeighbourRule.parse(match, where)


def open_store(path: Path | None) -> Store:
    """The store at ``--store`` (or ``$HQUERY_STORE``, or ``./hquery-store``)."""
    return Store.open(path if path is not None else default_store_path())


def store_path(path: Path | None) -> Path:
    return path if path is not None else default_store_path()


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; other names pass through."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def soft_knn(k: int, tau: float):
    """A :class:`~hquery.retrieval.softknn.SoftKNN`, with a bad ``k``/``tau`` reported as a usage error."""
    try:
        return SoftKNN(k, tau)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def sample_list(samples: str | None) -> list[str] | None:
    """``--samples`` as a list of sample ids (``None``: every sample)."""
    if samples is None:
        return None
    wanted = [s.strip() for s in samples.split(",") if s.strip()]
    if not wanted:
        raise click.BadParameter("names no sample; leave it out to score every sample", param_hint="--samples")
    return wanted


def renamed_command(command: click.Command, old: str, new: str) -> click.Command:
    """``command`` under the top-level name it had before ``new`` for one more release: hidden from ``--help``, and
    each use says the new name on stderr."""
    callback = command.callback

    @functools.wraps(callback)
    def run(*args, **kwargs):
        click.secho(f"note: `hquery {old}` is now `hquery {new}`; the old name goes in the next release",
                    fg="yellow", err=True)
        return callback(*args, **kwargs)

    alias = copy.copy(command)
    alias.name, alias.callback, alias.hidden = old, run, True
    return alias


class MethodChoice(click.Choice):
    """``--method``: ``auto`` or any registered route, read from the registry when the command runs (a route
    registered after import is a choice too)."""

    def __init__(self) -> None:
        super().__init__(METHODS)

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(METHODS)

    @choices.setter
    def choices(self, value) -> None:
        pass
