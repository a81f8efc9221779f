"""Ingest's encode path against its floor: the encoder's bare forward pass on tiles already in memory.

The small demo's tile folders (real PNG files on disk, decoded by PIL) are read
and embedded by :func:`hquery.ingest.embed.tile_embeddings`, the loop every
ingest runs, twice: reading in turn with the forward pass (``depth=0``, the
default on the CPU) and reading ahead in a background thread (``depth=2``, the
default when the encoder runs on a GPU). The floor,
measured in the same run, is the same encoder's ``embed`` on the same number
of tiles, held in memory in batches of the same size: what the loop would
reach if reading and decoding cost nothing. Prints tiles/s and the ratio to
the floor (the goal: 0.8 or more). Usage::

    python benchmarks/encode_floor.py [--encoder demo-vit] [--slides 120] [--batch 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from hquery.demo import generate_demo_cohort
    from hquery.ingest.encode import tile_embeddings
    from hquery.ingest.image_encoders import create_image_encoder, parse_image_encoder
    from hquery.ingest.manifest import read_manifest
    from hquery.ingest.slides import open_slide

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="demo-vit")
    parser.add_argument("--slides", type=int, default=120)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    files = generate_demo_cohort(Path(tempfile.mkdtemp(prefix="encode-floor-")), size="small")
    rows = [r for r in read_manifest(files.cohort_manifest) if r.slide_path is not None][: args.slides]
    sources = [(r.sample_id, open_slide(r.slide_path)) for r in rows]
    n_tiles = sum(s.n_tiles for _, s in sources)
    encoder = create_image_encoder(parse_image_encoder(args.encoder))
    shape = next(sources[0][1].iter_tiles(1))[1].shape[1:]
    held = np.random.default_rng(0).integers(0, 256, (args.batch, *shape), dtype=np.uint8)
    encoder.embed(held)  # warm-up

    started = time.perf_counter()
    for start in range(0, n_tiles, args.batch):
        encoder.embed(held[: min(args.batch, n_tiles - start)])
    floor = n_tiles / (time.perf_counter() - started)
    rates = {}
    for depth in (0, 2):
        started = time.perf_counter()
        assert sum(len(ids) for _, ids, _, _ in tile_embeddings(sources, encoder, args.batch, depth)) == n_tiles
        rates[depth] = n_tiles / (time.perf_counter() - started)
    print(f"{n_tiles} tiles of {len(sources)} slides ({shape[0]}x{shape[1]} px PNG), encoder {args.encoder}, "
          f"batch {args.batch}")
    print(f"floor, bare forward on tiles in memory: {floor:7.0f} tiles/s")
    for depth, label in ((0, "ingest loop, reading in turn (CPU)"), (2, "ingest loop, reading ahead (GPU)")):
        print(f"{label + ':':38s} {rates[depth]:7.0f} tiles/s  {rates[depth] / floor:.2f}x the floor")


if __name__ == "__main__":
    main()
