import h5py
import numpy as np
import pytest
from PIL import Image

from hquery.errors import InputError
from hquery.ingest.slides import TilingOptions, open_slide
from tests.conftest import SVS, write_tiles


def test_tile_folder_coordinates_come_from_names(tmp_path):
    slide = open_slide(write_tiles(tmp_path / "s", grid=2, size=32))
    assert slide.kind == "tiles" and slide.tile_size == 32 and slide.n_tiles == 4
    assert sorted(map(tuple, slide.coords.tolist())) == [(0, 0), (0, 32), (32, 0), (32, 32)]
    batches = list(slide.iter_tiles(batch_size=3))
    assert [len(i) for i, _ in batches] == [3, 1] and batches[0][1].shape == (3, 32, 32, 3)


def test_tile_folder_errors(tmp_path):
    folder = write_tiles(tmp_path / "s", grid=1)
    Image.new("RGB", (32, 32)).save(folder / "tile_a.png")
    with pytest.raises(InputError, match="tile_a.png: tile images must be named"):
        open_slide(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no tiles named"):
        open_slide(empty)
    odd = write_tiles(tmp_path / "odd", grid=1, size=32)
    Image.new("RGB", (48, 48)).save(odd / "64_0.png")
    with pytest.raises(InputError, match="64_0.png: tile is 48x48px"):
        list(open_slide(odd).iter_tiles(8))


def test_real_aperio_slide_is_tiled_on_tissue():
    slide = open_slide(SVS, TilingOptions(tile_size=224, magnification=20))
    assert slide.kind == "wsi" and (slide.width, slide.height) == (2220, 2967)
    assert slide.magnification == 20 and slide.mpp == pytest.approx(0.499)
    total = (2220 // 224) * (2967 // 224)
    assert 10 < slide.n_tiles < total  # the mask drops background but keeps tissue
    ids, images = next(slide.iter_tiles(batch_size=4))
    assert images.shape == (4, 224, 224, 3) and images.dtype == np.uint8
    # tissue tiles are stained (saturated), not white glass
    assert images.std(axis=-1).mean() > 5 and images.mean() < 240


def test_lower_magnification_reads_larger_regions():
    slide = open_slide(SVS, TilingOptions(tile_size=112, magnification=10))
    assert slide.magnification == 10 and slide.downsample == 2
    assert np.all(np.diff(np.unique(slide.coords[:, 0])) % 224 == 0)
    _, images = next(slide.iter_tiles(batch_size=2))
    assert images.shape == (2, 112, 112, 3)


@pytest.mark.parametrize("leading_axis", [False, True])
def test_feature_files_in_clam_and_trident_layouts(tmp_path, leading_axis):
    feats = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    coords = np.arange(10).reshape(5, 2) * 256
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as h5:
        h5["features"] = feats[None] if leading_axis else feats
        h5["coords"] = coords[None] if leading_axis else coords
        h5["coords"].attrs["patch_size_level0"] = 256
    slide = open_slide(path)
    assert slide.kind == "features" and slide.dim == 8 and slide.tile_size == 256
    got = np.concatenate([f for _, f in slide.iter_features(2)])
    np.testing.assert_array_equal(got, feats)
    np.testing.assert_array_equal(slide.coords, coords)


def test_feature_file_shape_errors(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as h5:
        h5["features"] = np.zeros((5, 8))
        h5["coords"] = np.zeros((4, 2))
    with pytest.raises(InputError, match="same N"):
        open_slide(path)
    with h5py.File(path, "w") as h5:
        h5["feats"] = np.zeros((5, 8))
    with pytest.raises(InputError, match="needs datasets 'features'"):
        open_slide(path)
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match="cannot read HDF5"):
        open_slide(corrupt)


@pytest.mark.parametrize("options, culprit", [({"tile_size": 0}, "tile size"), ({"magnification": -5}, "magnification"),
                                              ({"min_tissue": 1.5}, "min_tissue")])
def test_tiling_options_out_of_range_are_refused(options, culprit):
    from hquery.errors import InputError

    with pytest.raises(InputError, match=culprit):
        TilingOptions(**options)
