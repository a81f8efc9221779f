"""The demo run: generate the synthetic cohort, then ingest, train and index it the way a user would."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from hquery.demo import DEMO_ENCODER, SECOND_SITE, DemoFiles, generate_demo_cohort
from hquery.ingest import ingest_cohort
from hquery.ingest.embed import Progress, no_progress
from hquery.ingest.genesets import add_builtin_gene_data
from hquery.progress import progress_bars
from hquery.retrieval.index_builder import build_index
from hquery.store import Store, directory_size
from hquery.training.alignment_trainer import train_alignment


def ingest_demo_cohort(store_path: Path, files: DemoFiles, encoder: str | None = DEMO_ENCODER, *,
                       spots: bool = True, progress: Progress = no_progress,
                       echo: Callable[[str], None] | None = None) -> Store:
    """A new store at ``store_path`` holding the generated cohort ``files``: the reference library, then the
    pairs and query slides (tiles embedded by ``encoder``) with their spots unless ``spots`` is false."""
    echo = echo or (lambda text: None)
    store = Store.init(store_path)
    add_builtin_gene_data(store)
    echo(ingest_cohort(store, files.reference_manifest, expression=files.reference_expression,
                       name="demo_reference", progress=progress).summary())
    echo(ingest_cohort(store, files.cohort_manifest, expression=files.cohort_expression,
                       spots=files.cohort_spots if spots else None, name="demo", encoder=encoder,
                       progress=progress).summary())
    return store


def run_demo(store_path: Path, data_dir: Path, size: str = "default", seed: int = 0, progress: bool = True,
             echo: Callable[[str], None] = print, folds: int = 5, world: str = "A", encoder: str = DEMO_ENCODER):
    """Generate the demo cohort of ``world``, ingest it (tiles embedded by ``encoder``), train the alignment
    with ``folds``-fold CV and build the index.

    Returns the training report (its ``cv`` holds the recall table), the index report and the cohort's files
    (its second batch, ``later_manifest``, arrives after the first model serves).
    """
    started = time.perf_counter()
    with progress_bars(progress) as bars:
        files = generate_demo_cohort(data_dir, size=size, seed=seed, progress=bars, world=world)
        echo(f"wrote the {size} demo cohort of world {world} to {data_dir} ({time.perf_counter() - started:.1f}s)")
        store = ingest_demo_cohort(store_path, files, encoder, progress=bars, echo=echo)
        advance = bars(f"training the alignment ({folds}-fold cross-validation)", folds)
        trained = train_alignment(store, folds=folds, on_fold=lambda i: advance(1))
        echo(f"model {trained.version}: {trained.n_pairs} pairs from {trained.n_patients} patients, "
             f"{trained.seconds:.1f}s")
        indexed = build_index(store)
        echo(f"index {indexed.version}: {indexed.n_vectors} RNA profiles, {indexed.kind}, "
             f"{'GPU' if indexed.on_gpu else 'CPU'}")
    echo(f"demo done in {time.perf_counter() - started:.1f}s; store {store_path} is "
         f"{directory_size(store_path) / 2**20:.1f} MiB")
    return trained, indexed, files


def write_second_site(data_dir: Path, size: str = "default", seed: int = 0, world: str = "A",
                      progress: bool = True) -> DemoFiles:
    """The demo world's second hospital (:data:`~hquery.demo.SECOND_SITE`: its own stain, scanner and case mix),
    written to ``data_dir/site2`` for ``hquery eval transfer`` and ``eval adapt``."""
    with progress_bars(progress) as bars:
        return generate_demo_cohort(data_dir / "site2", size=size, seed=seed, progress=bars, world=world,
                                    site=SECOND_SITE)
