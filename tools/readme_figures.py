"""The docs' figures (docs/figures), made anew from the small demo of a world: the commands' own PNGs, shrunk for the page.

Runs the small demo (ingest, train, index), then the analyses the docs show
(the spectrum, association with the PD-L1 groups, survival by the G2M score, the
map of the aligned space, adaptation to the second hospital) through the same
library calls as their commands, and writes each PNG to ``docs/figures/``.

Usage::

    python tools/readme_figures.py [--world A] [--out docs/figures] [--work /tmp/figures]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from hquery.evaluation.adapt import evaluate_adaptation
from hquery.evaluation.association import associate
from hquery.evaluation.space import map_space
from hquery.evaluation.spectrum import evaluate_prompts
from hquery.evaluation.survival import survival
from hquery.genesets import resolve_prompts
from hquery.ingest import ingest_cohort
from hquery.pipelines.demo import run_demo, write_second_site
from hquery.store import Store

WIDTH = 900
"""Pixels across; the commands draw at 120 dpi for the screen, the page needs less."""
COLOURS = 128
"""A palette is enough for plots and makes the files a third of the size."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="A")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "figures")
    parser.add_argument("--work", type=Path, help="Where the demo and its store go [default: a temporary folder].")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="figures-"))
    run_demo(work / "store", work / "data", size="small", world=args.world, progress=False)
    store = Store.open(work / "store")
    figures = {"spectrum": evaluate_prompts(store, "hallmark").plot,
               "associate_pdl1": associate(store, resolve_prompts(store, ["INTERFERON_GAMMA"]), "pdl1",
                                           source="both").plots["HALLMARK_INTERFERON_GAMMA_RESPONSE"],
               "survival_g2m": survival(store, resolve_prompts(store, ["G2M"]), "os_months", "os_event",
                                        source="both").plots["HALLMARK_G2M_CHECKPOINT"],
               "map_space": map_space(store, color="cancer_type").plot}
    site = write_second_site(work / "data", size="small", world=args.world, progress=False)
    ingest_cohort(store, site.cohort_manifest, expression=site.cohort_expression, name="site2")
    figures["adaptation"] = evaluate_adaptation(store, "site2", (0, 0.1, 0.25, 0.5), repeats=2).plot
    args.out.mkdir(parents=True, exist_ok=True)
    for name, path in figures.items():
        image = Image.open(path).convert("RGB")
        image.thumbnail((WIDTH, WIDTH * 2))
        image.quantize(colors=COLOURS).save(args.out / f"{name}.png", optimize=True)
        print(f"{args.out / f'{name}.png'}  ({path})")


if __name__ == "__main__":
    main()
