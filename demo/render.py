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

Each cancer type also has its own architecture (:data:`ARCHITECTURES`), the way a
pathologist tells a colon gland from a squamous sheet: lumens rimmed by columnar
or cuboidal cells, keratinising sheets, clear cells in a fine septal net, or
pigmented epithelioid cells. Types that share a pattern (LUSC and HNSC) look alike.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import gaussian_filter

HEMATOXYLIN = np.array([0.65, 0.70, 0.29])
EOSIN = np.array([0.07, 0.99, 0.11])
MELANIN = np.array([0.27, 0.57, 0.78])

ARCHITECTURES = {
    "BRCA": "ductal", "LUAD": "acinar", "LUSC": "squamous", "COAD": "glandular",
    "SKCM": "melanocytic", "KIRC": "clear_cell", "PRAD": "microacinar", "HNSC": "squamous",
}
"""How each demo cancer type arranges its tumour cells; an unlisted type gets ``solid``."""

_LUMENS = {  # lumens per 64 px tile, lumen radius, rim nucleus (long, short radius), radially oriented
    "glandular": (1.5, (7.0, 11.0), (3.6, 1.4), True),
    "acinar": (2.0, (5.0, 9.0), (2.2, 1.6), False),
    "microacinar": (4.0, (2.5, 4.0), (2.0, 1.8), False),
    "ductal": (0.8, (2.5, 5.0), (2.6, 2.2), False),
}


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
                density: float = 1.0, architecture: str = "solid") -> np.ndarray:
    """Paint one ``size`` x ``size`` RGB tile (uint8) for the given program activities and tissue architecture."""
    area = (size / 64.0) ** 2
    prolif = activity.get("proliferation", 0.0)
    immune = activity.get("immune", 0.0)
    stroma = activity.get("stroma", 0.0)
    hypoxia = activity.get("hypoxia", 0.0)

    h, m = np.zeros((size, size)), np.zeros((size, size))
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
    _tumour(rng, architecture, n_tumour, 1 + 0.08 * prolif, h, e, area)
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

    if architecture == "melanocytic":
        for _ in range(rng.poisson(30 * area)):
            _stamp(m, rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0.8, 2.0), rng.uniform(0.6, 1.2),
                   rng.uniform(0, np.pi), rng.uniform(0.3, 0.8))

    h = gaussian_filter(h, 0.6)
    od = (stain.strength * (h[..., None] * stain.hematoxylin + e[..., None] * stain.eosin)
          + gaussian_filter(m, 0.5)[..., None] * MELANIN + 0.02)
    rgb = 255.0 * np.exp(-od) + rng.normal(0, 2.0, od.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _tumour(rng: np.random.Generator, architecture: str, n: int, scale: float, h: np.ndarray, e: np.ndarray,
            area: float) -> None:
    """Paint ``n`` tumour nuclei, and the stroma-free background, the way ``architecture`` arranges them."""
    size = h.shape[0]
    if architecture in _LUMENS:
        per_tile, (r_lo, r_hi), (ra, rb), radial = _LUMENS[architecture]
        lumens = [(rng.uniform(0, size), rng.uniform(0, size), rng.uniform(r_lo, r_hi))
                  for _ in range(rng.poisson(per_tile * area) + 1)]
        for cx, cy, r in lumens:
            _stamp(e, cx, cy, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi), -0.4)
        for _ in range(n):
            cx, cy, r = lumens[rng.integers(len(lumens))]
            t = rng.uniform(0, 2 * np.pi)
            d = r + ra * scale * (1.0 if radial else 0.8)
            angle = t if radial else rng.uniform(0, np.pi)
            _stamp(h, cx + d * np.cos(t), cy + d * np.sin(t), ra * scale, rb * scale, angle, rng.uniform(0.5, 0.8))
        np.clip(e, 0.03, None, out=e)
        return
    if architecture == "squamous":
        e += 0.2
        for _ in range(rng.poisson(0.8 * area)):  # keratin pearls: concentric eosinophilic whorls
            cx, cy = rng.uniform(0, size, 2)
            for k, r in enumerate(np.arange(rng.uniform(6, 10), 1, -1.6)):
                _stamp(e, cx, cy, r, r * 0.85, 0.3, 0.25 if k % 2 == 0 else -0.2)
        for _ in range(int(n * 0.6)):
            ra = rng.uniform(3.4, 4.6) * scale
            _stamp(h, rng.uniform(0, size), rng.uniform(0, size), ra, ra * rng.uniform(0.75, 1.0),
                   rng.uniform(0, np.pi), rng.uniform(0.35, 0.55))
        return
    if architecture == "clear_cell":
        centres = rng.uniform(0, size, (max(int(n * 1.2), 4), 2))
        yy, xx = np.mgrid[0:size, 0:size]
        d = np.sort(np.hypot(xx[..., None] - centres[:, 0], yy[..., None] - centres[:, 1]), axis=-1)
        septa = np.exp(-((d[..., 1] - d[..., 0]) / 1.2) ** 2)
        e += 0.45 * septa - 0.35
        np.clip(e, 0.05, None, out=e)
        for cx, cy in centres:
            r = rng.uniform(1.6, 2.4) * scale
            _stamp(h, cx, cy, r, r, 0.0, rng.uniform(0.6, 0.9))
        ys, xs = np.nonzero(septa > 0.6)
        for j in rng.choice(len(ys), size=min(len(ys), int(6 * area)), replace=False) if len(ys) else []:
            _stamp(e, xs[j], ys[j], 1.4, 1.2, 0.0, 0.7)  # red cells in the capillary net
        return
    big = 1.35 if architecture == "melanocytic" else 1.0
    for _ in range(n):
        ra = rng.uniform(2.4, 3.6) * scale * big
        cx, cy = rng.uniform(0, size, 2)
        _stamp(h, cx, cy, ra, ra * rng.uniform(0.65, 1.0), rng.uniform(0, np.pi), rng.uniform(0.45, 0.75))
        if architecture == "melanocytic":
            _stamp(h, cx, cy, 0.8, 0.8, 0.0, 0.9)  # a prominent nucleolus
