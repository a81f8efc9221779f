"""Slide features beyond the mean: the floor on mean + SD (or 10th/90th percentiles) of the tiles against the mean.

For each demo world (small, seed 0) the cohort is generated, ingested with
``he-features`` and every paired slide pooled three ways from its tile embeddings.
The ridge+type floor (:class:`hquery.training.type_ridge.TypeRidge`) is fitted on
the spectrum's patient-level folds for each pooling and scored on the held-out
slides for the Hallmarks of the programs the world draws: mean calibrated R² and
r within cancer type. The baseline is the mean, which is what hquery stores as the
slide embedding (one image head then serves slides and tiles alike).

Usage::

    python benchmarks/slide_pooling.py [--worlds A,B] [--root DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

POOLINGS = ("mean", "mean+sd", "mean+q10/q90")


def pooled(tiles: np.ndarray, how: str) -> np.ndarray:
    if how == "mean":
        return tiles.mean(0)
    if how == "mean+sd":
        return np.concatenate([tiles.mean(0), tiles.std(0)])
    return np.concatenate([tiles.mean(0), *np.quantile(tiles, [0.1, 0.9], axis=0)])


def measure(world: str, root: Path) -> dict[str, tuple[float, float]]:
    from hquery.demo import WORLDS, generate_demo_cohort
    from hquery.genesets import resolve_prompts
    from hquery.library import Library
    from hquery.pipelines.demo import ingest_demo_cohort
    from hquery.stats import pearson_within_groups, r_squared
    from hquery.training.bags import load_slide_bags
    from hquery.training.pairs import load_pairs
    from hquery.training.splits import patient_folds
    from hquery.training.type_ridge import TypeRidge

    files = generate_demo_cohort(root / "data", size="small", seed=0, world=world)
    store = ingest_demo_cohort(root / "store", files, "he-features", spots=False)
    pairs = load_pairs(store, "slide")
    bags = load_slide_bags(store, pairs.sample_ids)
    sets = resolve_prompts(store, collection="hallmark")
    library = Library(store)
    scores, _ = library.scores(sets, library.match(sets, min_genes=5))
    truth = scores[[library.row[s] for s in pairs.sample_ids]]
    types = np.array([t or "unknown" for t in bags.cancer_types])
    drawn = [[gs.name for gs in sets].index(name) for name in WORLDS[world].drawn_hallmarks()]
    folds = [test for _, test in patient_folds(pairs.patients, 5, 0)]
    out = {}
    for how in POOLINGS:
        x = np.stack([pooled(bags.tiles[bags.rows(i)], how) for i in range(len(bags))])
        predicted = np.zeros_like(truth)
        for test in folds:
            train = np.setdiff1d(np.arange(len(truth)), test)
            predicted[test] = TypeRidge.fit(x[train], types[train], truth[train]).predict(x[test], types[test])
        out[how] = (float(np.mean([r_squared(predicted[:, j], truth[:, j]) for j in drawn])),
                    float(np.mean([pearson_within_groups(predicted[:, j], truth[:, j], types) for j in drawn])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="A,B")
    parser.add_argument("--root", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or Path(scratch)
        for world in args.worlds.split(","):
            results = measure(world, root / world)
            base = results["mean"][0]
            for how, (r2, r_type) in results.items():
                print(f"world {world} {how:13s} floor R² {r2:.3f} ({r2 - base:+.3f} vs mean), r within type {r_type:.3f}")


if __name__ == "__main__":
    main()
