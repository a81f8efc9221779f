"""Space Ranger output as it arrives: scanpy's Visium test section (Space Ranger 1.0.0 layout, 100 spots; scanpy
1.12.4 sdist, BSD-3-Clause) and a small full-resolution section the test writes."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hquery.cli import main
from hquery.errors import InputError
from hquery.ingest import ingest_cohort
from hquery.ingest.visium import SPOT_DIAMETER_UM, prepare_visium, read_space_ranger
from tests.conftest import DATA

VISIUM = DATA / "visium_1.0.0"


def test_the_scanpy_section_is_read_with_its_spot_centres_and_counts():
    section = read_space_ranger(VISIUM)
    assert len(section.barcodes) == 100 and section.counts.shape == (100, 100)
    assert section.barcodes[0] == "AAACAAGTATCTCCCA-1"
    np.testing.assert_array_equal(section.centres[0], (9811, 8513))  # pxl_col_in_fullres, pxl_row_in_fullres
    assert section.spot_diameter == pytest.approx(89.4275) and section.mpp == pytest.approx(55 / 89.4275)
    assert section.counts.sum() > 0 and section.genes[2] == "ENSG00000186092"


def test_it_ingests_as_100_tile_spot_pairs_at_the_right_coordinates(store, tmp_path):
    inputs = prepare_visium(VISIUM, tmp_path / "inputs", "V1", "P1", cancer_type="BRCA")
    assert inputs.n_spots == 100 and inputs.image == "hires" and inputs.tile_px == 13
    # a reference library first (the RNA encoder needs profiles to fit on): sums of random spot subsets
    lines = inputs.spots.read_text().splitlines()
    counts = np.array([[int(v) for v in line.split(",")[3:]] for line in lines[1:]])
    rng = np.random.default_rng(0)
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "manifest.csv").write_text("sample_id,patient_id\n" + "".join(f"R{i},RP{i}\n" for i in range(8)))
    (tmp_path / "ref" / "expression.csv").write_text(",".join(["sample_id", *lines[0].split(",")[3:]]) + "\n" + "".join(
        ",".join([f"R{i}", *map(str, counts[rng.random(100) < 0.3].sum(0))]) + "\n" for i in range(8)))
    ingest_cohort(store, tmp_path / "ref" / "manifest.csv", expression=tmp_path / "ref" / "expression.csv")
    report = ingest_cohort(store, inputs.manifest, expression=inputs.expression, spots=inputs.spots,
                           encoder="he-features")
    assert report.n_pairs == 1 and report.n_tiles == 100
    section = read_space_ranger(VISIUM)
    corners = np.round(section.centres - section.spot_diameter / 2).astype(int)
    tiles = store.sql("select x, y from tiles where sample_id = 'V1' order by y, x").to_pylist()
    assert sorted((t["x"], t["y"]) for t in tiles) == sorted(map(tuple, corners.tolist()))
    spots = store.sql("select count(*) n, count(distinct tile_index) tiles from spot_expression").to_pylist()[0]
    assert spots == {"n": 100, "tiles": 100}
    slide = store.sql("select mpp, resolution_from from slides").to_pylist()[0]
    assert slide == {"mpp": pytest.approx(SPOT_DIAMETER_UM / 13), "resolution_from": "given"}
    genes = {r["symbol"] for r in store.sql("select symbol from genes").to_pylist()}
    assert "OR4F5" in genes and "ENSG00000186092" not in genes  # Ensembl IDs mapped through the shipped table


def test_a_full_resolution_image_gives_full_resolution_tiles(tmp_path):
    outs = tmp_path / "outs"
    (outs / "spatial").mkdir(parents=True)
    import h5py

    barcodes, centres = ["AAA-1", "CCC-1", "GGG-1"], [(100, 120), (300, 120), (200, 300)]
    with h5py.File(outs / "filtered_feature_bc_matrix.h5", "w") as h5:
        m = h5.create_group("matrix")
        m["shape"] = np.array([2, 3], np.int32)
        m["barcodes"] = np.array([b.encode() for b in barcodes])
        m["features/name"] = np.array([b"TP53", b"MKI67"])
        m["features/id"] = np.array([b"ENSG00000141510", b"ENSG00000148773"])
        m["data"], m["indices"], m["indptr"] = np.array([5.0, 2.0, 7.0]), np.array([0, 1, 1]), np.array([0, 1, 2, 3])
    (outs / "spatial" / "tissue_positions.csv").write_text(
        "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres\n"
        + "".join(f"{b},1,0,{i},{y},{x}\n" for i, (b, (x, y)) in enumerate(zip(barcodes, centres))))
    (outs / "spatial" / "scalefactors_json.json").write_text(json.dumps(
        {"spot_diameter_fullres": 110.0, "tissue_hires_scalef": 0.5}))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(tmp_path / "full.png")
    inputs = prepare_visium(outs, tmp_path / "in", "S", "P", image=tmp_path / "full.png")
    assert inputs.image == "full resolution" and inputs.tile_px == 110 and inputs.mpp == pytest.approx(0.5)
    tile = np.asarray(Image.open(tmp_path / "in" / "slides" / "S" / "45_65.png"))
    np.testing.assert_array_equal(tile, np.asarray(Image.open(tmp_path / "full.png"))[65:175, 45:155])
    spots = (tmp_path / "in" / "spots.csv").read_text().splitlines()
    assert spots[0] == "sample_id,x,y,TP53,MKI67" and spots[1:] == ["S,45,65,5,0", "S,245,65,0,2", "S,145,245,0,7"]
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(InputError, match=r"small.png: spot CCC-1 at x=245, y=65 lies outside the 200x200 px image"):
        prepare_visium(outs, tmp_path / "in2", "S", "P", image=tmp_path / "small.png")
    (outs / "spatial" / "tissue_positions.csv").unlink()
    with pytest.raises(InputError, match="not a Space Ranger outs folder; the spot positions"):
        read_space_ranger(outs)


def test_cli_visium_prints_the_ingest_that_follows(tmp_path):
    result = CliRunner().invoke(main, ["visium", str(VISIUM), "--out", str(tmp_path / "v"), "--sample-id", "V1",
                                       "--patient-id", "P1"])
    assert result.exit_code == 0, result.output
    assert "100 spots of V1: tiles of 13 px" in result.output and "next: hquery ingest" in result.output


def test_one_section_ingests_into_an_empty_store_its_spots_fitting_the_rna_encoder(tmp_path):
    result = CliRunner().invoke(main, ["visium", str(VISIUM), "--out", str(tmp_path / "v"), "--sample-id", "V1",
                                       "--patient-id", "P1"])
    command = result.output.split("next: hquery ")[1].split()  # exactly what it told the user to run
    store = tmp_path / "store"
    assert CliRunner().invoke(main, ["init", "--store", str(store)]).exit_code == 0
    result = CliRunner().invoke(main, [*command, "--encoder", "he-features", "--store", str(store), "--quiet"])
    assert result.exit_code == 0, result.output
    from hquery.store import Store

    opened = Store.open(store)
    [encoder] = opened.sql("select params from encoders where kind = 'rna'").to_pylist()
    assert json.loads(encoder["params"])["fit_on"] == "profiles and spots"
    assert json.loads(encoder["params"])["n_fit"] == 101  # the pseudo-bulk and its 100 spots
    assert opened.sql("select count(*) n from rna_embeddings").to_pylist()[0]["n"] == 1


def test_a_lone_bulk_profile_is_refused_with_the_way_forward(store, tmp_path):
    (tmp_path / "manifest.csv").write_text("sample_id,patient_id\nA,PA\n")
    (tmp_path / "expression.csv").write_text("sample_id,MKI67,TOP2A,CD8A\nA,5,6,7\n")
    with pytest.raises(InputError, match="brings 1; ingest at least 3 profiles"):
        ingest_cohort(store, tmp_path / "manifest.csv", expression=tmp_path / "expression.csv")
    assert store.query("store_counts")[0].samples == 0


def test_a_hest_sample_is_read_from_its_layout(tmp_path):
    import anndata
    import scipy.sparse

    root = tmp_path / "hest"
    for folder in ("st", "metadata", "wsis"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(1)
    adata = anndata.AnnData(scipy.sparse.csr_matrix(rng.poisson(3, (4, 3)).astype(np.float32)))
    adata.obs_names = [f"spot{i}" for i in range(4)]
    adata.var_names = ["ENSG00000141510", "MKI67", "CD8A"]
    adata.obsm["spatial"] = np.array([[100, 100], [300, 100], [100, 300], [300, 300]], np.float64)
    adata.write_h5ad(root / "st" / "TENX1.h5ad")
    (root / "metadata" / "TENX1.json").write_text(json.dumps({"pixel_size_um_estimated": 0.5, "spot_diameter": 55.0}))
    Image.fromarray(rng.integers(0, 255, (420, 420, 3), dtype=np.uint8)).save(root / "wsis" / "TENX1.tif")
    inputs = prepare_visium(root, tmp_path / "in", "TENX1", "P1", hest=True)
    assert inputs.n_spots == 4 and inputs.tile_px == 110 and inputs.mpp == pytest.approx(0.5)
    assert sorted(p.name for p in (tmp_path / "in" / "slides" / "TENX1").iterdir()) == [
        "245_245.png", "245_45.png", "45_245.png", "45_45.png"]
    spots = (tmp_path / "in" / "spots.csv").read_text().splitlines()
    assert spots[0] == "sample_id,x,y,ENSG00000141510,MKI67,CD8A"
    with pytest.raises(InputError, match="no HEST sample 'TENX2'; its expression"):
        prepare_visium(root, tmp_path / "in2", "TENX2", "P1", hest=True)
