"""Type-conditioned projection heads against plain ones, on both demo worlds, beside the floor of the same run.

For each world (small, seed 0, tiles embedded with ``he-features``) the
predictability spectrum runs twice on the same patient-level folds: heads whose
image side reads the cancer-type one-hot beside the slide embedding (the
default, ``AlignmentConfig.condition_on_type``), and the same heads without it.
Printed per route, as the mean over the Hallmarks of the programs the world
draws: held-out calibrated R², Pearson r and r within cancer type. The ridge+type
floor does not use the heads, so it is the same in both runs: the baseline every
route is read against.

Usage::

    python benchmarks/type_conditioning.py [--worlds A,B] [--root DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

ROUTES = ("softknn", "mlp", "ridge_type", "ensemble", "auto")
METRICS = ("r2_calibrated", "pearson_r", "r_within_type")


def measure(world: str, root: Path) -> dict[bool, dict[str, dict[str, float]]]:
    """``{conditioned: {route: {metric: mean over the drawn Hallmarks}}}``."""
    from hquery.demo import WORLDS, generate_demo_cohort
    from hquery.evaluation.spectrum import evaluate_prompts
    from hquery.pipelines.demo import ingest_demo_cohort
    from hquery.training.heads import AlignmentConfig

    files = generate_demo_cohort(root / "data", size="small", seed=0, world=world)
    store = ingest_demo_cohort(root / "store", files, "he-features", spots=False)
    drawn = WORLDS[world].drawn_hallmarks()
    return {conditioned: evaluate_prompts(store, "hallmark", record=False,
                                          config=dataclasses.replace(AlignmentConfig(),
                                                                     condition_on_type=conditioned)).means(drawn)
            for conditioned in (False, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="A,B")
    parser.add_argument("--root", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or Path(scratch)
        for world in args.worlds.split(","):
            means = measure(world, root / world)
            print(f"world {world}: mean over the drawn Hallmarks, R² / r / r within type "
                  "(plain heads -> type-conditioned heads)")
            for route in ROUTES:
                cells = "   ".join(f"{means[False][route][m]:.3f} -> {means[True][route][m]:.3f}" for m in METRICS)
                print(f"  {route:11s} {cells}")


if __name__ == "__main__":
    main()
