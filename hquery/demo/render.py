"""Procedural H&E-like tiles whose morphology follows latent programs.

Tiles are painted in optical density (Beer-Lambert): hematoxylin and eosin
concentration maps are mixed through a per-slide stain matrix, so colour
varies between slides the way staining batches do. What each program leaves:

* proliferation: denser, larger tumour nuclei and mitotic figures;
* immune: clusters of small, round, dark lymphocytes;
* stroma: pink collagen streaks with aligned spindle nuclei;
* hypoxia: pale necrotic patches with nuclear debris.

Other programs (metabolic, stress, hormone) leave no trace, so a model can
only learn them through correlations, as in real tissue.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import gaussian_filter

HEMATOXYLIN = np.array([0.65, 0.70, 0.29])
EOSIN = np.array([0.07, 0.99, 0.11])


@dataclasses.dataclass(frozen=True)
class Stain:
    """A slide's stain matrix and intensity."""

    hematoxylin: np.ndarray
    eosin: np.ndarray
    strength: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Stain:
        def jitter(v):
            w = np.clip(v + rng.normal(0, 0.06, 3), 0.02, None)
            return w / np.linalg.norm(w)

        return cls(jitter(HEMATOXYLIN), jitter(EOSIN), float(rng.uniform(0.8, 1.2)))


def _sigmoid(x: float) -> float:
    return float(1 / (1 + np.exp(-x)))


def _stamp(canvas: np.ndarray, cx, cy, ra, rb, angle, value) -> None:
    """Add a soft-edged ellipse to ``canvas``."""
    r = int(np.ceil(max(ra, rb))) + 2
    x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 1, canvas.shape[1])
    y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 1, canvas.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(angle), np.sin(angle)
    d = np.sqrt(((dx * c + dy * s) / ra) ** 2 + ((-dx * s + dy * c) / rb) ** 2)
    canvas[y0:y1, x0:x1] += value * np.clip((1.25 - d) * 4, 0, 1)


def render_tile(rng: np.random.Generator, size: int, activity: dict[str, float], stain: Stain,
                density: float = 1.0) -> np.ndarray:
    """Paint one ``size`` x ``size`` RGB tile (uint8) for the given program activities."""
    area = (size / 64.0) ** 2
    prolif = activity.get("proliferation", 0.0)
    immune = activity.get("immune", 0.0)
    stroma = activity.get("stroma", 0.0)
    hypoxia = activity.get("hypoxia", 0.0)

    h = np.zeros((size, size))
    e = 0.45 + 0.25 * gaussian_filter(rng.normal(size=(size, size)), 2.0)

    # stroma: collagen streaks along a dominant direction, with spindle nuclei
    s_frac = _sigmoid(1.4 * stroma - 1.0)
    theta = rng.uniform(0, np.pi)
    for _ in range(rng.poisson(10 * s_frac * area) + 1):
        _stamp(e, rng.uniform(0, size), rng.uniform(0, size), rng.uniform(8, 20), rng.uniform(0.8, 1.6),
               theta + rng.normal(0, 0.15), 0.35 * s_frac + 0.05)
    for _ in range(rng.poisson(7 * s_frac * area)):
        _stamp(h, rng.uniform(0, size), rng.uniform(0, size), rng.uniform(3.5, 5), rng.uniform(0.8, 1.2),
               theta + rng.normal(0, 0.2), 0.7)

    # tumour nuclei: density and size grow with proliferation, displaced by stroma
    n_tumour = rng.poisson(density * 22 * area * np.exp(0.35 * prolif) * (1 - 0.6 * s_frac))
    scale = 1 + 0.08 * prolif
    for _ in range(n_tumour):
        ra = rng.uniform(2.4, 3.6) * scale
        _stamp(h, rng.uniform(0, size), rng.uniform(0, size), ra, ra * rng.uniform(0.65, 1.0),
               rng.uniform(0, np.pi), rng.uniform(0.45, 0.75))
    # mitotic figures: condensed dark chromatin bars and clumps
    for _ in range(rng.poisson(0.5 * area * np.exp(0.9 * prolif))):
        cx, cy, ang = rng.uniform(4, size - 4), rng.uniform(4, size - 4), rng.uniform(0, np.pi)
        for t in np.linspace(-2.5, 2.5, 5):
            _stamp(h, cx + t * np.cos(ang) + rng.normal(0, 0.4), cy + t * np.sin(ang) + rng.normal(0, 0.4),
                   1.1, 0.9, ang, 0.9)

    # lymphocytes: small round dense nuclei in clusters
    n_lymph = rng.poisson(5 * area * np.exp(1.0 * immune))
    centres = rng.uniform(0, size, size=(rng.integers(1, 4), 2))
    for i in range(n_lymph):
        cx, cy = centres[i % len(centres)] + rng.normal(0, size / 9, 2)
        r = rng.uniform(1.5, 2.1)
        _stamp(h, cx, cy, r, r, 0.0, 1.1)

    # hypoxia / necrosis: pale patch, nuclei fade, karyorrhectic debris
    n_frac = _sigmoid(1.8 * (hypoxia - 1.5))
    if n_frac > 0.05:
        field = gaussian_filter(rng.normal(size=(size, size)), size / 6)
        mask = field > np.quantile(field, 1 - n_frac)
        h[mask] *= 0.25
        e[mask] = 0.12 + 0.05 * e[mask]
        ys, xs = np.nonzero(mask)
        for j in rng.choice(len(ys), size=min(len(ys), int(40 * n_frac * area) + 1), replace=False) if len(ys) else []:
            _stamp(h, xs[j] + rng.uniform(-.5, .5), ys[j] + rng.uniform(-.5, .5), 0.9, 0.7, rng.uniform(0, np.pi), 0.8)

    h = gaussian_filter(h, 0.6)
    od = stain.strength * (h[..., None] * stain.hematoxylin + e[..., None] * stain.eosin) + 0.02
    rgb = 255.0 * np.exp(-od) + rng.normal(0, 2.0, od.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)
