"""The weights-free H&E encoder, one family of features at a time, on synthetic tiles of known content."""

import numpy as np
import pytest
from skimage.color import hed2rgb, rgb2hed

from hquery.errors import InputError
from hquery.ingest.he_features import FEATURE_NAMES, HEFeatureEncoder, stain_densities, tile_features
from hquery.ingest.image_encoders import create_image_encoder, parse_image_encoder

PINK = (235, 160, 200)
SIZE = 128


def features(tile) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, tile_features(tile)))


def stained(h: float, e: float) -> np.ndarray:
    """A tile of one colour: haematoxylin and eosin optical densities ``h`` and ``e`` (skimage's HED space)."""
    hed = np.zeros((SIZE, SIZE, 3))
    hed[..., 0], hed[..., 1] = h, e
    return (np.clip(hed2rgb(hed), 0, 1) * 255).round().astype(np.uint8)


def discs(centres, radius, background=PINK, colour=(60, 40, 120), axes=(1.0, 1.0)) -> np.ndarray:
    tile = np.empty((SIZE, SIZE, 3), np.uint8)
    tile[:] = background
    ys, xs = np.mgrid[:SIZE, :SIZE]
    for cy, cx in centres:
        tile[((ys - cy) / axes[0]) ** 2 + ((xs - cx) / axes[1]) ** 2 <= radius**2] = colour
    return tile


def test_stain_separation_matches_rgb2hed_and_tells_the_stains_apart():
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    h, e = stain_densities(tile)
    reference = rgb2hed(tile)
    np.testing.assert_allclose(h, np.clip(reference[..., 0], 0, None), atol=1e-6)
    np.testing.assert_allclose(e, np.clip(reference[..., 1], 0, None), atol=1e-6)
    blue, pink = features(stained(0.08, 0.005)), features(stained(0.005, 0.08))
    assert blue["h_mean"] > 5 * blue["e_mean"] and pink["e_mean"] > 5 * pink["h_mean"]
    assert pink["eosin_fraction"] == 1.0 and blue["eosin_fraction"] == 0.0
    assert blue["h_sd"] < 1e-3 and blue["h_q10"] == pytest.approx(blue["h_q90"], abs=1e-3)  # one colour, no spread


def test_composition_fractions_are_the_painted_areas():
    tile = np.full((SIZE, SIZE, 3), 250, np.uint8)  # background
    tile[:, : SIZE // 2] = PINK  # half tissue
    tile[: SIZE // 4, : SIZE // 4] = (230, 60, 70)  # a red-cell patch, 1/16 of the tile
    tile[SIZE // 2 :, : SIZE // 8] = (40, 30, 60)  # very dark, 1/16
    f = features(tile)
    assert f["tissue_fraction"] == pytest.approx(0.5) and f["background_fraction"] == pytest.approx(0.5)
    assert f["red_cell_fraction"] == pytest.approx(1 / 16)
    assert f["very_dark_fraction"] == pytest.approx(1 / 16) and f["dark_fraction"] == pytest.approx(1 / 16)


def test_nuclei_are_counted_sized_and_shaped():
    centres = [(y, x) for y in range(16, SIZE, 32) for x in range(16, SIZE, 32)]  # 16 nuclei
    round_ = features(discs(centres, 6))
    assert round_["nucleus_density"] == pytest.approx(16 / SIZE**2 * 1e4)
    assert round_["nucleus_area_mean"] * 100 == pytest.approx(np.pi * 36, rel=0.1)
    assert round_["nucleus_area_sd"] < 0.01 and round_["nucleus_elongation"] < 0.05
    assert round_["nucleus_circularity"] > 0.6
    assert round_["nuclear_fraction"] == pytest.approx(16 * np.pi * 36 / SIZE**2, rel=0.1)
    assert round_["nucleus_h_mean"] > 0
    oval = features(discs(centres, 6, axes=(0.5, 1.5)))
    assert oval["nucleus_elongation"] > 0.4 and oval["nucleus_circularity"] < round_["nucleus_circularity"]
    none = features(discs([], 6))
    assert none["nucleus_density"] == 0 and none["nuclear_fraction"] == 0


def test_texture_separates_fine_grain_from_smooth_tissue():
    fine = np.empty((SIZE, SIZE, 3), np.uint8)
    fine[:] = PINK
    fine[::2, ::2] = (120, 70, 130)
    smooth = np.repeat(np.linspace(120, 235, SIZE).astype(np.uint8)[None, :, None], SIZE, 0).repeat(3, 2)
    f, s = features(fine), features(smooth)
    assert f["glcm_contrast_d1"] > 10 * s["glcm_contrast_d1"]
    assert f["glcm_homogeneity_d1"] < s["glcm_homogeneity_d1"]
    assert s["glcm_contrast_d4"] > s["glcm_contrast_d1"]  # a gradient differs more over 4 px than over 1


def test_the_encoder_is_deterministic_and_threads_change_nothing():
    rng = np.random.default_rng(1)
    tiles = rng.integers(0, 256, size=(9, 48, 48, 3), dtype=np.uint8)
    one, two = HEFeatureEncoder(threads=1).embed(tiles), HEFeatureEncoder(threads=2).embed(tiles)
    assert one.shape == (9, len(FEATURE_NAMES)) and one.dtype == np.float32 and np.isfinite(one).all()
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, HEFeatureEncoder(threads=1).embed(tiles))
    with pytest.raises(ValueError, match="uint8 tiles"):
        HEFeatureEncoder().embed(tiles.astype(np.float32))


def test_specs_name_it_alone_or_beside_a_timm_model():
    spec = parse_image_encoder("he-features")
    assert spec.text == "handcrafted:he-features" and spec.runs_model and not spec.adaptable
    both = parse_image_encoder("concat:he-features+random:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=1")
    encoder = create_image_encoder(both)
    tiles = np.random.default_rng(2).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    out = encoder.embed(tiles)
    assert out.shape == (2, len(FEATURE_NAMES) + 192) and encoder.dim == out.shape[1]
    np.testing.assert_array_equal(out[:, : len(FEATURE_NAMES)], HEFeatureEncoder().embed(tiles))
    assert both.version != spec.version and both.version.startswith("concat_he_features")
    with pytest.raises(InputError, match="unknown handcrafted encoder"):
        parse_image_encoder("handcrafted:colour")
    with pytest.raises(InputError, match="two or more encoders"):
        parse_image_encoder("concat:he-features")
