"""Stain normalisation (torchstain's Macenko and Reinhard) on real H&E tiles and the same tiles through a heavier,
bluer stain."""

import numpy as np
import pytest

from hquery.errors import InputError
from hquery.ingest import ingest_cohort
from hquery.ingest.image_encoders import create_image_encoder, parse_image_encoder
from hquery.ingest.slides import TilingOptions, open_slide
from hquery.ingest.stain import StainNormalizedEncoder, StainNormalizer
from tests.conftest import SVS, write_cohort


@pytest.fixture(scope="module")
def tiles():
    slide = open_slide(SVS, TilingOptions(tile_size=224))
    return np.concatenate([images for _, images in slide.iter_tiles(64)])[:12]


def restain(tiles: np.ndarray, gain=(1.25, 1.55, 1.05)) -> np.ndarray:
    """The same tissue through another lab's stain: optical density scaled per channel (heavier, bluer)."""
    density = -np.log((tiles.astype(np.float64) + 1) / 256) * np.array(gain)
    return np.clip(256 * np.exp(-density) - 1, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_normalising_brings_two_stains_of_one_tissue_together(tiles, method):
    shifted = restain(tiles)
    normalizer = StainNormalizer(method)
    before = np.abs(tiles.astype(float) - shifted).mean()
    after = np.abs(normalizer.normalize(tiles).astype(float) - normalizer.normalize(shifted)).mean()
    assert after < 0.6 * before, (before, after)
    assert normalizer.normalize(tiles).dtype == np.uint8
    blank = np.full((1, 64, 64, 3), 248, np.uint8)
    np.testing.assert_array_equal(normalizer.normalize(blank), blank)  # nothing to estimate from: left as it is


def test_the_method_is_part_of_the_encoder_and_its_version(tiles):
    plain, stained = parse_image_encoder("he-features"), parse_image_encoder("he-features?stain=macenko")
    assert stained.text == "handcrafted:he-features?stain=macenko" and stained.version != plain.version
    assert plain.with_stain("macenko") == stained and stained.with_stain("none") == plain
    assert not parse_image_encoder("demo-vit?stain=reinhard").adaptable
    encoder = create_image_encoder(stained)
    assert isinstance(encoder, StainNormalizedEncoder) and encoder.params["stain"] == "macenko"
    raw = create_image_encoder(plain)

    def gap(enc):
        a, b = enc.embed(tiles), enc.embed(restain(tiles))
        return np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(a, axis=1).mean()

    assert gap(encoder) < 0.5 * gap(raw)
    with pytest.raises(InputError, match="unknown stain normalisation 'vahadane'"):
        parse_image_encoder("he-features?stain=vahadane")


def test_ingest_stain_normalize_embeds_into_its_own_tables(store, tmp_path):
    manifest, expression = write_cohort(tmp_path / "c", n_pairs=4, n_ref=4, n_query=0)
    report = ingest_cohort(store, manifest, expression=expression, encoder="he-features", stain="reinhard")
    assert report.image_encoder == parse_image_encoder("he-features?stain=reinhard").version
    assert store.sql("select count(*) n from tile_embeddings").to_pylist()[0]["n"] == report.n_tiles
