"""Tile maps: the grid, thumbnails from a real WSI and from tile folders, and `hquery map` on the demo store."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hquery.cli import main
from hquery.ingest.slides import TilingOptions, open_slide
from hquery.retrieval.tilemap import slide_thumbnail, tile_grid
from tests.conftest import SVS, write_tiles


def test_grid_places_scores_and_leaves_gaps_empty():
    x = np.array([100, 356, 100, 868])
    y = np.array([50, 50, 306, 306])
    grid, step = tile_grid(x, y, np.array([1.0, 2.0, 3.0, 4.0]))
    assert step == 256 and grid.shape == (2, 4)
    assert grid[0, 0] == 1 and grid[0, 1] == 2 and grid[1, 0] == 3 and grid[1, 3] == 4
    assert np.isnan(grid[0, 2]) and np.isnan(grid[1, 1])
    single, _ = tile_grid(np.array([7]), np.array([9]), np.array([0.5]))
    assert single.shape == (1, 1)


def test_thumbnail_of_a_real_whole_slide_covers_its_tiles():
    slide = open_slide(SVS, TilingOptions(tile_size=224, magnification=20))
    x, y = slide.coords[:, 0], slide.coords[:, 1]
    _, step = tile_grid(x, y, np.zeros(len(x)))
    thumb = slide_thumbnail(str(SVS), "wsi", x, y, step, max_px=256)
    width, height = x.max() - x.min() + step, y.max() - y.min() + step
    assert thumb.ndim == 3 and max(thumb.shape[:2]) == 256
    assert thumb.shape[1] / thumb.shape[0] == pytest.approx(width / height, rel=0.05)
    assert thumb.mean() < 240  # tissue, not blank background


def test_thumbnail_of_a_tile_folder_is_a_mosaic(tmp_path):
    folder = write_tiles(tmp_path / "slide", grid=2, size=32)
    x, y = np.array([0, 32, 0, 32]), np.array([0, 0, 32, 32])
    thumb = slide_thumbnail(str(folder), "tiles", x, y, 32)
    assert thumb.shape == (64, 64, 3)
    first = np.asarray(Image.open(folder / "0_0.png").convert("RGB"))
    np.testing.assert_array_equal(thumb[:32, :32], first)
    assert slide_thumbnail(str(folder), "features", x, y, 32) is None


@pytest.mark.slow
def test_map_command_draws_each_gene_set(demo_store, tmp_path):
    from hquery.retrieval import build_index
    from hquery.training import AlignmentConfig, train_alignment
    from tests.conftest import copy_store

    store = copy_store(demo_store, tmp_path / "store")
    train_alignment(store, config=AlignmentConfig(max_epochs=20))
    build_index(store)
    sample = store.sql("select sample_id from samples where has_slide order by 1 limit 1").to_pylist()[0]["sample_id"]
    result = CliRunner().invoke(main, ["map", sample, "--genes", "HYPOXIA", "--genes", "G2M", "--out",
                                       str(tmp_path / "maps"), "--store", str(store.root)])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert pngs == [f"{sample}_HALLMARK_G2M_CHECKPOINT.png", f"{sample}_HALLMARK_HYPOXIA.png"]
    assert Image.open(tmp_path / "maps" / pngs[0]).size[0] > 800
    levels = store.sql("select level, n_samples from prompt_runs").to_pylist()
    assert levels == [{"level": "tile", "n_samples": 1}]
    missing = CliRunner().invoke(main, ["map", "NOPE", "--genes", "G2M", "--store", str(store.root)])
    assert missing.exit_code == 1 and "no slide for sample" in missing.output
