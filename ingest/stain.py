"""Stain normalisation before a tile is embedded: the same tissue through another lab's stain should embed alike.

Two classical methods, both torchstain's (numpy backend, so no second framework):

* ``macenko`` (Macenko et al., ISBI 2009): each tile's haematoxylin and eosin
  vectors are estimated from its optical density, and its stain concentrations
  re-rendered with a fixed reference matrix (torchstain's default, from the
  method's original implementation);
* ``reinhard`` (Reinhard et al., 2001): each tile's LAB channels are standardised
  and given a fixed target's means and SDs (:data:`REINHARD_TARGET`).

Normalisation runs per tile, so a tile's embedding never depends on which other
tiles were ingested with it. A tile with too little stain to estimate from
(background, a fold) is left as it is. The method is part of the image
encoder's spec (``?stain=macenko``), so its embeddings land in tables of their
own and never mix with unnormalised ones.
"""

from __future__ import annotations

import warnings

import numpy as np
from torchstain.base.normalizers import MacenkoNormalizer, ReinhardNormalizer

from hquery.errors import InputError

METHODS = ("macenko", "reinhard")
REINHARD_TARGET = ((56.4187, 23.8916, -10.2385), (25.7532, 15.2314, 10.287))
"""LAB means and SDs of the tissue tiles of ``tests/data/cmu_small_region.svs``, a real
Aperio H&E region (CMU OpenSlide test data): ``python tools/stain_target.py`` re-derives them."""


MIN_STAINED = 0.05
"""Below this share of stained pixels (optical density 0.15 or more in a channel, Macenko's own cut) a tile has
too little stain to estimate from, and is left as it is."""


class StainNormalizer:
    """``normalize(uint8 [b, h, w, 3]) -> uint8 [b, h, w, 3]`` by one of :data:`METHODS`."""

    def __init__(self, method: str):
        if method not in METHODS:
            raise InputError(f"unknown stain normalisation {method!r}; use {', '.join(METHODS)} (or leave it out)")
        self.method = method
        if method == "macenko":
            self.normalizer = MacenkoNormalizer(backend="numpy")
        else:
            self.normalizer = ReinhardNormalizer(backend="numpy")
            self.normalizer.target_means, self.normalizer.target_stds = (np.array(v) for v in REINHARD_TARGET)

    def normalize_tile(self, tile: np.ndarray) -> np.ndarray:
        density = -np.log((tile.reshape(-1, 3).astype(np.float64) + 1) / 240)
        if (density >= 0.15).any(axis=1).mean() < MIN_STAINED:
            return tile
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a degenerate tile falls back below
                out = self.normalizer.normalize(tile, stains=False)[0] if self.method == "macenko" \
                    else self.normalizer.normalize(tile)
        except (np.linalg.LinAlgError, ValueError, IndexError):
            return tile
        out = np.nan_to_num(np.asarray(out, dtype=np.float64), nan=255.0)
        return np.clip(out if out.max() > 1.5 else out * 255, 0, 255).astype(np.uint8)

    def normalize(self, tiles: np.ndarray) -> np.ndarray:
        return np.stack([self.normalize_tile(t) for t in tiles]) if len(tiles) else tiles


class StainNormalizedEncoder:
    """An image encoder whose tiles are stain-normalised first."""

    def __init__(self, encoder, method: str):
        self.encoder, self.stain = encoder, StainNormalizer(method)
        self.dim = encoder.dim

    @property
    def params(self) -> dict:
        return {**self.encoder.params, "stain": self.stain.method}

    def embed(self, images: np.ndarray) -> np.ndarray:
        return self.encoder.embed(self.stain.normalize(images))
