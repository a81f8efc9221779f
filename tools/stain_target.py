"""Re-derive :data:`hquery.ingest.stain.REINHARD_TARGET`: the LAB means and SDs of a real H&E region's tissue.

The tissue tiles (224 px at 20x, the ingest's own tiling and mask) of
``tests/data/cmu_small_region.svs`` (an Aperio H&E region, CMU's OpenSlide test
data), pooled, through torchstain's Reinhard fit. Usage::

    python tools/stain_target.py
"""

from pathlib import Path

import numpy as np
from torchstain.base.normalizers import ReinhardNormalizer

from hquery.ingest.slides import TilingOptions, open_slide

SVS = Path(__file__).resolve().parents[1] / "tests" / "data" / "cmu_small_region.svs"


def main() -> None:
    slide = open_slide(SVS, TilingOptions(tile_size=224))
    tiles = np.concatenate([images for _, images in slide.iter_tiles(64)])
    normalizer = ReinhardNormalizer(backend="numpy")
    normalizer.fit(tiles.reshape(-1, 224, 3))
    means, stds = (tuple(round(float(v), 4) for v in x) for x in (normalizer.target_means, normalizer.target_stds))
    print(f"{len(tiles)} tissue tiles; REINHARD_TARGET = ({means}, {stds})")


if __name__ == "__main__":
    main()
