"""Tile-level prompt scores drawn over the slide: ``hquery map SAMPLE --genes ...``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from hquery.ingest.slides import open_wsi, on_white
from hquery.store import Store, StoreError


def tile_side(store: Store, sample_id: str) -> float:
    """The side of slide ``sample_id``'s tiles in level-0 pixels: its tile size, times the ratio of the tiles' µm/px to
    the slide's own where the tiles were cut coarser."""
    [slide] = store.query("slide_footprint", [sample_id])
    return slide.tile_size * (slide.mpp / slide.source_mpp if slide.mpp and slide.source_mpp else 1.0)


def tile_grid(x: np.ndarray, y: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, int]:
    """Scores on the slide's tile grid (NaN where there is no tile), and the grid step in level-0 pixels.

    Tiles sit on a regular grid whose step is the smallest gap between distinct
    coordinates; a slide of one tile has a 1 x 1 grid.
    """
    gaps = [np.diff(np.unique(c)) for c in (x, y)]
    steps = [int(g.min()) for g in gaps if len(g)]
    step = min(steps) if steps else 1
    cols, rows = (x - x.min()) // step, (y - y.min()) // step
    grid = np.full((int(rows.max()) + 1, int(cols.max()) + 1), np.nan)
    grid[rows.astype(int), cols.astype(int)] = values
    return grid, step


def slide_thumbnail(source_path: str, kind: str, x: np.ndarray, y: np.ndarray, step: int, max_px: int = 1024):
    """An RGB image covering the tile grid's extent, or ``None`` when the slide has no pixels (features only)."""
    from PIL import Image

    path = Path(source_path)
    if kind == "wsi":

        with open_wsi(path) as slide:
            left, top = int(x.min()), int(y.min())
            width, height = int(x.max() - left + step), int(y.max() - top + step)
            scale = max(width, height) / max_px
            level = slide.get_best_level_for_downsample(scale)
            ds = slide.level_downsamples[level]
            region = on_white(slide.read_region((left, top), level, (int(width / ds), int(height / ds))))
            return np.asarray(region.resize((max(1, int(width / scale)), max(1, int(height / scale)))))
    if kind == "tiles":
        cols, rows = int((x.max() - x.min()) // step) + 1, int((y.max() - y.min()) // step) + 1
        px = max(4, min(step, max_px // max(cols, rows)))
        canvas = Image.new("RGB", (cols * px, rows * px), (255, 255, 255))
        for xi, yi in zip(x, y):
            found = [p for p in (path / f"{xi}_{yi}.png", path / f"{xi}_{yi}.jpg", path / f"{xi}_{yi}.jpeg")
                     if p.exists()]
            if found:
                with Image.open(found[0]) as tile:
                    canvas.paste(on_white(tile).resize((px, px)),
                                 (int((xi - x.min()) // step) * px, int((yi - y.min()) // step) * px))
        return np.asarray(canvas)
    return None


def render_tile_map(store: Store, sample_id: str, results: pa.Table, gene_set: str, path: str | Path) -> Path:
    """A PNG of one gene set's tile scores for ``sample_id``: the slide, and the scores over it.

    ``results`` are tile-level prompt results (:func:`~hquery.retrieval.prompt.run_prompt` with ``level="tile"``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow.compute as pc

    rows = results.filter(pc.and_(pc.equal(results["sample_id"], sample_id), pc.equal(results["gene_set"], gene_set)))
    if rows.num_rows == 0:
        raise StoreError(f"no tile scores for sample {sample_id} and gene set {gene_set}")
    coords = {t.tile_index: (t.x, t.y) for t in store.query("slide_tiles", [sample_id])}
    tiles = rows["tile_index"].to_pylist()
    x = np.array([coords[t][0] for t in tiles])
    y = np.array([coords[t][1] for t in tiles])
    grid, step = tile_grid(x, y, rows["score"].to_numpy())
    source = store.query("slide_source", [sample_id])
    thumbnail = slide_thumbnail(source[0].source_path, source[0].source_kind, x, y, step) if source else None

    panels = 2 if thumbnail is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 5), constrained_layout=True, squeeze=False)
    extent = (0, grid.shape[1], grid.shape[0], 0)
    if thumbnail is not None:
        axes[0, 0].imshow(thumbnail, extent=extent)
        axes[0, 0].set_title(f"{sample_id}: {len(tiles)} tiles")
        axes[0, 1].imshow(thumbnail, extent=extent)
    heat = axes[0, -1].imshow(np.ma.masked_invalid(grid), extent=extent, cmap="magma",
                              alpha=0.6 if thumbnail is not None else 1.0, interpolation="nearest")
    axes[0, -1].set_title(gene_set)
    fig.colorbar(heat, ax=axes[0, -1], shrink=0.8, label="predicted ssGSEA ES")
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
