"""PEKA on the small demo store: train an adapter through the CLI, compare it, re-embed the slides with it."""


import numpy as np
import pytest
from click.testing import CliRunner

from hquery.cli import main
from hquery.errors import NotReadyError
from hquery.ingest import reembed_slides
from hquery.ingest.image_encoders import ImageEncoder, parse_image_encoder
from hquery.ingest.slides import reopen_slide
from hquery.records import model_record
from hquery.store import vectors
from hquery.training.pairs import load_tile_images
from tests.conftest import copy_store


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def peka_trained(demo_store, tmp_path_factory):
    """The small demo with a PEKA adapter (compared first; 3 epochs rather than 5, to keep the suite short)."""
    store = copy_store(demo_store, tmp_path_factory.mktemp("peka") / "store")
    frozen = {name: t.version for name, t in store.lance_tables().items()}
    return store, frozen, run("train", "peka", "--epochs", "3", "--quiet", "--store", store.root)


@pytest.fixture(scope="module")
def adapted(peka_trained, tmp_path_factory):
    """:func:`peka_trained` with its slides re-embedded through the adapter."""
    trained, frozen, output = peka_trained
    store = copy_store(trained, tmp_path_factory.mktemp("adapted") / "store")
    reembedded = run("embed", "--quiet", "--device", "cpu", "--store", store.root)
    return store, frozen, output, reembedded


def test_reembedding_on_ray_writes_what_the_local_run_wrote(peka_trained, adapted, tmp_path):
    pytest.importorskip("ray")
    store = copy_store(peka_trained[0], tmp_path / "store")
    output = run("embed", "--quiet", "--device", "cpu", "--engine", "ray", "--workers", "2", "--store", store.root)
    assert "re-embedded" in output and store.stages() == []
    local = adapted[0]
    version = local.setting("image_encoder")
    assert store.setting("image_encoder") == version
    for level in ("tile", "slide"):
        a = local.dataset(f"{level}_embeddings__{version}").to_table()
        b = store.dataset(f"{level}_embeddings__{version}").to_table()
        assert b["sample_id"].to_pylist() == a["sample_id"].to_pylist()
        np.testing.assert_allclose(vectors(b["embedding"]), vectors(a["embedding"]), atol=1e-4)


def test_spot_tiles_are_read_back_from_their_slides(demo_store):
    tiles = load_tile_images(demo_store)
    spots = demo_store.dataset("spot_expression").count_rows()
    assert len(tiles) == spots and tiles.target == "spot" and tiles.images.dtype == np.uint8
    assert tiles.teacher.shape == (spots, 64) and tiles.expression.shape[1] == len(tiles.genes)
    # the pixels are the ones the frozen encoder embedded at ingest
    encoder = ImageEncoder(parse_image_encoder(tiles.image_encoder_spec))
    stored = demo_store.dataset(f"tile_embeddings__{demo_store.setting('image_encoder')}").to_table()
    row = {(s, t): i for i, (s, t) in enumerate(zip(stored["sample_id"].to_pylist(), stored["tile_index"].to_pylist()))}
    first = [row[k] for k in tiles.keys[:8]]
    np.testing.assert_allclose(encoder.embed(tiles.images[:8]), vectors(stored["embedding"])[first], atol=1e-4)


def test_training_records_the_adapter_and_the_comparison(adapted):
    store, _, output, _ = adapted
    version = store.setting("peka_adapter")
    assert version.startswith("peka_miss_") and f"adapter {version}: miss" in output
    for name in ("None (frozen)", "LoRA", "PEKA (MiSS bat)"):
        assert name in output
    record = model_record(store, "peka")
    params, metrics = record.params, record.metrics
    assert record.version == version and params["target"] == "spot" and 0.03 < params["trainable_fraction"] < 0.08
    assert [r["method"] for r in metrics["probe"]] == ["none", "lora", "miss"]
    assert all(len(r["fold_pcc"]) == 5 and -1 <= r["pcc_mean"] <= 1 for r in metrics["probe"])
    assert (record.folder(store) / "adapter" / "adapter_config.json").exists()


def test_peka_beats_the_frozen_backbone_on_the_demo(adapted):
    """The issue's bar: on held-out patients, PEKA's features predict the top-50 HVGs at least 5% better.

    Measured (seed 0, 328 probed tiles, 3 epochs): None 0.296, LoRA 0.313, PEKA 0.376 (+27%); with the
    default 5 epochs PEKA reaches 0.383 (+29%).
    """
    store, _, _, _ = adapted
    probe = {r["method"]: r for r in model_record(store, "peka").metrics["probe"]}
    none, peka = probe["none"]["pcc_mean"], probe["miss"]["pcc_mean"]
    assert none > 0.15, "the frozen backbone should already see the cancer types' architecture"
    assert peka >= 1.05 * none, (none, peka)


def test_reembedding_writes_new_tables_and_keeps_the_frozen_ones(adapted):
    store, frozen, _, output = adapted
    adapter = store.setting("peka_adapter")
    current = store.setting("image_encoder")
    base = parse_image_encoder(store.setting("image_encoder_spec")).with_adapter(None)
    assert adapter in current and current != base.version and "re-embedded" in output
    tables = store.lance_tables()
    for name, version in frozen.items():
        assert tables[name].version == version  # nothing frozen was rewritten
    new_tiles = store.dataset(f"tile_embeddings__{current}").to_table()
    old_tiles = store.dataset(f"tile_embeddings__{base.version}").to_table()
    assert new_tiles.num_rows == old_tiles.num_rows
    assert not np.allclose(vectors(new_tiles["embedding"]), vectors(old_tiles["embedding"]), atol=1e-3)
    # the adapter loads back onto the same backbone and gives the stored numbers
    sample = new_tiles["sample_id"][0].as_py()
    _, images = next(reopen_slide(store, sample).iter_tiles(64))
    adapter_dir = model_record(store, "peka", adapter).folder(store) / "adapter"
    encoder = ImageEncoder(parse_image_encoder(store.setting("image_encoder_spec")), adapter_dir=adapter_dir)
    rows = [i for i, s in enumerate(new_tiles["sample_id"].to_pylist()) if s == sample]
    np.testing.assert_allclose(encoder.embed(images), vectors(new_tiles["embedding"])[rows], atol=1e-4)
    # the alignment now trains on the adapted features
    from hquery.training.pairs import load_pairs

    assert load_pairs(store).image_encoder == current


def test_reembedding_again_adds_nothing(adapted):
    store = adapted[0]
    report = reembed_slides(store, device="cpu")
    assert report.n_slides == 0 and report.n_skipped > 0 and "already embedded" in report.summary()


def test_reembedding_needs_an_adapter(demo_store, tmp_path):
    store = copy_store(demo_store, tmp_path / "store")
    with pytest.raises(NotReadyError, match="no PEKA adapter to re-embed with"):
        reembed_slides(store)
    with pytest.raises(NotReadyError, match="no PEKA adapter 'peka_nope'"):
        reembed_slides(store, "peka_nope")
    result = CliRunner().invoke(main, ["embed", "--store", str(store.root)])
    assert result.exit_code == 1 and "no PEKA adapter to re-embed with" in result.output
    assert "run `hquery train peka`" in result.output


def test_without_spots_each_tile_is_taught_by_its_slides_bulk_profile(store, tmp_path):
    from hquery.ingest import ingest_cohort
    from tests.conftest import write_cohort

    manifest, expression = write_cohort(tmp_path / "c", n_pairs=4)
    ingest_cohort(store, manifest, expression=expression,
                  encoder="random:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2&seed=0", device="cpu")
    tiles = load_tile_images(store, max_tiles_per_slide=3)
    assert tiles.target == "bulk" and len(tiles) == 4 * 3 and tiles.images.shape[1:] == (32, 32, 3)
    bulk = store.dataset(f"rna_embeddings__{store.setting('rna_encoder')}").to_table()
    by_sample = dict(zip(bulk["sample_id"].to_pylist(), vectors(bulk["embedding"])))
    for (sample, _), teacher in zip(tiles.keys, tiles.teacher):
        np.testing.assert_allclose(teacher, by_sample[sample], rtol=1e-5, atol=1e-5)
    assert len(set(tiles.keys)) == len(tiles)
