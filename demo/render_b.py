"""World B's tiles: a second visual grammar, drawn as vector shapes, for checking claims made on world A.

World A (:mod:`hquery.demo.render`) paints stain concentrations in optical
density and mixes them through a stain matrix. World B is built differently on
purpose, so that a model tuned to one grammar is caught out on the other:

* **rendering**: cells are polygons and ellipses drawn with PIL at twice the
  tile size and downsampled, over a cell lattice whose arrangement is the
  tumour type's (sheets, cords, nests, papillae or a loose scatter);
* **stain**: each slide gets a palette (a haematoxylin and an eosin RGB colour)
  shifted in hue, saturation and value, then a focus blur and a brightness
  gamma, as scanners and staining batches differ;
* **tile size**: 96 px, not 64;
* **what the programs draw** (a different set from world A):

  - ``oxphos``: dense, granular, deeper-pink cytoplasm (oncocytic cells);
  - ``stroma``: wavy collagen bands between the tumour cells, and small vessels
    with red cells inside;
  - ``immune``: small dark lymphocytes scattered evenly through the tile;
  - ``hormone``: pale blue-grey secretion droplets among the cells.

  Proliferation, hypoxia and stress leave no trace in world B.
"""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

TILE_PX = 96
SUPERSAMPLE = 2
DRAWN = ("oxphos", "stroma", "immune", "hormone")
"""The programs world B's tiles show."""

PATTERNS = {
    "BRCA": "nests", "LUAD": "papillae", "LUSC": "sheets", "COAD": "cords", "SKCM": "scatter", "KIRC": "sheets",
    "PRAD": "nests", "HNSC": "cords",
}
"""How each type's tumour cells are arranged in world B; an unlisted type gets ``sheets``."""

NUCLEUS_SHAPE = {
    "BRCA": (1.0, 1.0), "LUAD": (1.3, 0.8), "LUSC": (1.1, 1.0), "COAD": (1.6, 0.7), "SKCM": (1.2, 1.2),
    "KIRC": (0.8, 0.8), "PRAD": (0.9, 0.9), "HNSC": (1.2, 1.1),
}
"""Per type, the nucleus's long and short radius relative to the default."""


@dataclasses.dataclass(frozen=True)
class Palette:
    """A slide's look: stain colours, focus and brightness."""

    haematoxylin: tuple[int, int, int]
    eosin: tuple[int, int, int]
    background: tuple[int, int, int]
    blur: float
    gamma: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Palette:
        def shifted(rgb, hue_sd, sat_sd, val_sd):
            h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
            h = (h + rng.normal(0, hue_sd)) % 1.0
            s = float(np.clip(s * rng.lognormal(0, sat_sd), 0.05, 1))
            v = float(np.clip(v * rng.lognormal(0, val_sd), 0.1, 1))
            return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))

        return cls(shifted((88, 58, 150), 0.025, 0.12, 0.08), shifted((228, 140, 188), 0.02, 0.15, 0.04),
                   shifted((244, 236, 242), 0.01, 0.3, 0.01), float(rng.uniform(0.2, 0.9)),
                   float(rng.uniform(0.85, 1.15)))


def _sigmoid(x: float) -> float:
    return float(1 / (1 + np.exp(-x)))


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return tuple(int(round((1 - t) * x + t * y)) for x, y in zip(a, b))


def _lattice(rng: np.random.Generator, pattern: str, size: float, spacing: float) -> np.ndarray:
    """Cell centres ``[n, 2]`` (canvas pixels) in the type's arrangement."""
    if pattern == "scatter":
        n = rng.poisson((size / spacing) ** 2 * 0.7)
        return rng.uniform(0, size, (n, 2))
    rows = np.arange(-spacing, size + spacing, spacing * 0.87)
    points = []
    for i, y in enumerate(rows):
        offset = (i % 2) * spacing / 2
        for x in np.arange(-spacing + offset, size + spacing, spacing):
            points.append((x, y))
    points = np.array(points) + rng.normal(0, spacing * 0.12, (len(points), 2))
    if pattern == "cords":
        angle = rng.uniform(0, np.pi)
        across = points @ np.array([-np.sin(angle), np.cos(angle)])
        points = points[(across // (2.2 * spacing)) % 2 == 0]
    elif pattern == "nests":
        centres = rng.uniform(0, size, (max(2, int(size / (2.5 * spacing)) ** 2 // 2), 2))
        near = np.min(np.linalg.norm(points[:, None] - centres[None], axis=2), axis=1)
        points = points[near < 2.0 * spacing]
    elif pattern == "papillae":
        phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.2) * size
        wave = size / 2 + 0.25 * size * np.sin(2 * np.pi * points[:, 0] / period + phase)
        points = points[np.abs(points[:, 1] - wave) < 1.6 * spacing]
    return points


def render_tile_b(rng: np.random.Generator, activity: dict[str, float], palette: Palette, cancer_type: str,
                  size: int = TILE_PX) -> np.ndarray:
    """Draw one world-B tile (uint8 RGB ``[size, size, 3]``) for these program activities and tumour type."""
    s = size * SUPERSAMPLE
    image = Image.new("RGB", (s, s), palette.background)
    draw = ImageDraw.Draw(image)
    oxphos = _sigmoid(1.3 * activity.get("oxphos", 0.0))
    stroma = _sigmoid(1.3 * activity.get("stroma", 0.0) - 0.3)
    immune = activity.get("immune", 0.0)
    hormone = activity.get("hormone", 0.0)
    pattern = PATTERNS.get(cancer_type, "sheets")
    long_r, short_r = NUCLEUS_SHAPE.get(cancer_type, (1.0, 1.0))
    spacing = 11.0 * SUPERSAMPLE

    # collagen bands and vessels (stroma), drawn first so cells sit on top
    collagen = _mix(palette.eosin, (250, 120, 160), 0.35)
    for _ in range(rng.poisson(1 + 7 * stroma)):
        y0, amplitude, phase = rng.uniform(0, s), rng.uniform(2, 8) * SUPERSAMPLE, rng.uniform(0, 2 * np.pi)
        xs = np.linspace(0, s, 24)
        ys = y0 + amplitude * np.sin(xs / s * 2 * np.pi * rng.uniform(0.5, 2) + phase)
        draw.line(list(zip(xs, ys)), fill=collagen, width=int(rng.uniform(2, 5) * SUPERSAMPLE))
    for _ in range(rng.poisson(2.5 * stroma)):
        cx, cy, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(4, 8) * SUPERSAMPLE
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=_mix(palette.eosin, (120, 40, 90), 0.5),
                     width=SUPERSAMPLE * 2, fill=(240, 225, 230))
        for _ in range(rng.integers(1, 4)):
            dx, dy = rng.normal(0, r / 3, 2)
            draw.ellipse([cx + dx - 2.5 * SUPERSAMPLE, cy + dy - 2.5 * SUPERSAMPLE, cx + dx + 2.5 * SUPERSAMPLE,
                          cy + dy + 2.5 * SUPERSAMPLE], fill=(205, 45, 55))

    # tumour cells: cytoplasm polygons and nuclei; stroma displaces them
    cytoplasm = _mix(palette.eosin, _mix(palette.eosin, (150, 40, 110), 0.6), oxphos)
    centres = _lattice(rng, pattern, s, spacing)
    keep = rng.random(len(centres)) > 0.55 * stroma
    for cx, cy in centres[keep]:
        angles = np.sort(rng.uniform(0, 2 * np.pi, 6))
        radius = spacing * rng.uniform(0.5, 0.62)
        draw.polygon([(cx + radius * np.cos(a), cy + radius * np.sin(a)) for a in angles],
                     fill=_mix(cytoplasm, palette.background, float(rng.uniform(0, 0.15))))
        for _ in range(rng.poisson(6 * oxphos)):  # granules
            gx, gy = cx + rng.normal(0, radius / 2.5), cy + rng.normal(0, radius / 2.5)
            draw.point((gx, gy), fill=_mix(cytoplasm, (90, 20, 70), 0.5))
        rx, ry = 2.5 * SUPERSAMPLE * long_r, 2.5 * SUPERSAMPLE * short_r
        angle = rng.uniform(0, np.pi)
        outline = [(cx + rx * np.cos(t) * np.cos(angle) - ry * np.sin(t) * np.sin(angle),
                    cy + rx * np.cos(t) * np.sin(angle) + ry * np.sin(t) * np.cos(angle))
                   for t in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
        draw.polygon(outline, fill=_mix(palette.haematoxylin, palette.background, float(rng.uniform(0.1, 0.35))))

    # secretion droplets (hormone)
    for _ in range(rng.poisson(0.5 + 5 * _sigmoid(1.5 * hormone - 0.5))):
        cx, cy, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(2.5, 5) * SUPERSAMPLE
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(178, 186, 214))

    # lymphocytes, evenly scattered (immune)
    for _ in range(rng.poisson(3 * np.exp(0.9 * immune))):
        cx, cy, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(1.6, 2.2) * SUPERSAMPLE
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_mix(palette.haematoxylin, (20, 10, 40), 0.5))

    image = image.filter(ImageFilter.GaussianBlur(palette.blur * SUPERSAMPLE)).resize((size, size), Image.LANCZOS)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = pixels ** palette.gamma + rng.normal(0, 0.01, pixels.shape)
    return np.clip(pixels * 255, 0, 255).astype(np.uint8)
