"""What each registered foundation model costs per 1,000 tiles on this machine's CPU, against he-features.

Every timm and transformers entry of :data:`hquery.ingest.foundation_models.FOUNDATION_MODELS`
is built at full size with random weights (the cost of a forward pass does not
depend on the weights' values), in a process of its own so that its peak memory
is its own, and fed real H&E tiles (``tests/data/cmu_small_region.svs``) at its
input size through the same preprocessing and pooling as ingest. The baseline,
measured in the same run on the same tiles, is the weights-free ``he-features``
encoder, hquery's default. Printed per model: seconds per 1,000 tiles, the ratio
to the baseline, and peak resident memory.

GPU costs are not measured here (there is no GPU); docs/inputs.md cites timm's published
inference benchmark for the nearest architecture instead.

Usage::

    python benchmarks/foundation_models.py [--tiles 16] [--only uni,phikon]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from he_features import real_tiles  # noqa: E402


def measure(name: str, n_tiles: int, batch: int = 8) -> tuple[float, float]:
    """``(tiles per second, peak RSS in GiB)`` of one model, in this (fresh) process."""
    import numpy as np
    import torch

    from hquery.ingest.foundation_models import build_architecture, forward_embedding, foundation_model

    entry = foundation_model(name)
    torch.manual_seed(0)
    model = build_architecture(entry).eval()
    tiles = real_tiles(n_tiles, entry.tile_size)
    mean, std = torch.tensor(entry.mean).view(1, 3, 1, 1), torch.tensor(entry.std).view(1, 3, 1, 1)

    def embed(images: np.ndarray):
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        x = torch.nn.functional.interpolate(x, size=(entry.input_size,) * 2, mode="bilinear", antialias=True)
        with torch.inference_mode():
            return forward_embedding(entry, model, (x - mean) / std)

    embed(tiles[:2])
    started = time.perf_counter()
    for start in range(0, n_tiles, batch):
        out = embed(tiles[start:start + batch])
    assert out.shape[-1] == entry.dim
    return n_tiles / (time.perf_counter() - started), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    from hquery.ingest.foundation_models import FOUNDATION_MODELS
    from hquery.ingest.he_features import HEFeatureEncoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=16, help="Tiles timed per model (after a warm-up batch).")
    parser.add_argument("--only", help="Comma-separated model names [default: every one built here].")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else [n for n, e in FOUNDATION_MODELS.items() if e.library != "conch"]
    tiles = real_tiles(max(args.tiles, 256))
    baseline = HEFeatureEncoder()
    baseline.embed(tiles[:64])
    started = time.perf_counter()
    baseline.embed(tiles)
    base_rate = len(tiles) / (time.perf_counter() - started)
    print(f"baseline he-features: {1000 / base_rate:.2f} s per 1,000 tiles ({base_rate:.0f} tiles/s)")
    print(f"{'model':12s} {'dim':>5s} {'s / 1,000 tiles':>16s} {'x he-features':>14s} {'peak RSS GiB':>13s}")
    context = multiprocessing.get_context("spawn")
    for name in names:
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            rate, rss = pool.submit(measure, name, args.tiles).result()
        print(f"{name:12s} {FOUNDATION_MODELS[name].dim:5d} {1000 / rate:16.0f} {base_rate / rate:14.0f} {rss:13.1f}",
              flush=True)


if __name__ == "__main__":
    main()
