"""Throughput of the weights-free H&E encoder against the demo's timm encoder, on the same tiles in one run.

Tiles are 224 x 224 px cut from a real H&E slide region
(``tests/data/cmu_small_region.svs``, via OpenSlide) and repeated to ``--tiles``.
Measured, in tiles per second of ``embed``:

* ``he-features`` (:class:`hquery.ingest.he_features.HEFeatureEncoder`), with
  as many threads as CPUs (the target: 300 tiles/s on 2 cores);
* the same, one thread;
* the baseline: ``demo-vit`` (a ViT-Tiny at 64 px; the demo's default encoder),
  fed the same 224 px tiles, which it resizes.

Usage::

    python benchmarks/he_features.py [--tiles 1024]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SLIDE = Path(__file__).resolve().parent.parent / "tests" / "data" / "cmu_small_region.svs"


def real_tiles(n: int, size: int = 224) -> np.ndarray:
    import openslide

    slide = openslide.OpenSlide(str(SLIDE))
    width, height = slide.dimensions
    tiles = [np.asarray(slide.read_region((x, y), 0, (size, size)).convert("RGB"))
             for y in range(0, height - size + 1, size) for x in range(0, width - size + 1, size)]
    return np.stack([tiles[i % len(tiles)] for i in range(n)])


def tiles_per_second(encoder, tiles: np.ndarray, batch: int = 64) -> float:
    encoder.embed(tiles[:batch])
    started = time.perf_counter()
    for start in range(0, len(tiles), batch):
        encoder.embed(tiles[start : start + batch])
    return len(tiles) / (time.perf_counter() - started)


def main() -> None:
    from hquery.ingest.he_features import HEFeatureEncoder
    from hquery.ingest.image_encoders import create_image_encoder, parse_image_encoder
    from hquery.parallel import available_cpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=1024)
    args = parser.parse_args()
    tiles = real_tiles(args.tiles)
    cpus = available_cpus()
    rows = [
        (f"he-features, {cpus} threads", tiles_per_second(HEFeatureEncoder(), tiles)),
        ("he-features, 1 thread", tiles_per_second(HEFeatureEncoder(threads=1), tiles)),
        ("demo-vit (baseline)", tiles_per_second(create_image_encoder(parse_image_encoder("demo-vit")), tiles)),
    ]
    baseline = rows[-1][1]
    print(f"{len(tiles)} real H&E tiles of 224 px, {cpus} CPUs")
    print(f"{'encoder':28s} {'tiles/s':>9s} {'x baseline':>10s}")
    for name, rate in rows:
        print(f"{name:28s} {rate:9.0f} {rate / baseline:10.2f}")


if __name__ == "__main__":
    main()
