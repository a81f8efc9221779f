"""QuPath GeoJSON and AnnData exports of prompt runs on the small demo: what they hold is what the run recorded."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hquery.cli import main
from hquery.errors import InputError
from hquery.export import export_h5ad, export_qupath, write_report
from hquery.genesets import resolve_prompts
from hquery.retrieval.tilemap import tile_grid
from tests.conftest import copy_store

SETS = ["HALLMARK_G2M_CHECKPOINT", "HALLMARK_HYPOXIA"]


@pytest.fixture(scope="module")
def store(indexed_store, tmp_path_factory):
    return copy_store(indexed_store, tmp_path_factory.mktemp("exports") / "store")


@pytest.fixture(scope="module")
def slide(store):
    return store.sql("select sample_id from slides order by n_tiles desc, sample_id limit 1").to_pylist()[0]["sample_id"]


def recorded(store, run_id: str) -> dict:
    rows = store.sql(f"select sample_id, tile_index, gene_set, score, dispersion, effective_k from prompt_results_all "
                     f"where run_id = '{run_id}'").to_pylist()
    return {(r["sample_id"], r["tile_index"], r["gene_set"]): r for r in rows}


def test_qupath_detections_sit_on_the_tiles_and_carry_the_recorded_scores(store, slide, tmp_path):
    done = export_qupath(store, slide, resolve_prompts(store, SETS), tmp_path)
    collection = json.loads(done.path.read_text())
    tiles = {r["tile_index"]: (r["x"], r["y"]) for r in
             store.sql(f"select tile_index, x, y from tiles where sample_id = '{slide}'").to_pylist()}
    assert collection["type"] == "FeatureCollection" and done.n_tiles == len(collection["features"]) == len(tiles)
    _, step = tile_grid(np.array([x for x, _ in tiles.values()]), np.array([y for _, y in tiles.values()]),
                        np.zeros(len(tiles)))
    scores = recorded(store, done.run_id)
    for feature in collection["features"]:
        props = feature["properties"]
        assert props["objectType"] == "detection" and feature["geometry"]["type"] == "Polygon"
        tile = int(props["name"].rsplit(" ", 1)[1])
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert tuple(ring[0]) == tiles[tile] and tuple(ring[-1]) == tiles[tile]  # closed, at the tile's level-0 origin
        assert ring[2][0] - ring[0][0] == ring[2][1] - ring[0][1] == step  # a tile folder's tiles abut on the grid
        for name in SETS:
            row = scores[(slide, tile, name)]
            assert props["measurements"][name] == row["score"]
            assert props["measurements"][f"{name} dispersion"] == row["dispersion"]


def test_qupath_export_of_an_unknown_slide_names_it(store, tmp_path):
    with pytest.raises(InputError, match="sample NOPE has no slide"):
        export_qupath(store, "NOPE", resolve_prompts(store, SETS[:1]), tmp_path)
    assert not list(tmp_path.iterdir())


def test_h5ad_of_slides_holds_the_recorded_scores_metadata_and_provenance(store, tmp_path):
    import anndata

    done = export_h5ad(store, resolve_prompts(store, SETS), tmp_path / "slides.h5ad")
    adata = anndata.read_h5ad(done.path)
    assert adata.shape == (done.n_obs, 2) and list(adata.var_names) == SETS
    scores = recorded(store, done.run_id)
    for i, sid in enumerate(adata.obs["sample_id"]):
        for j, name in enumerate(SETS):
            row = scores[(sid, None, name)]
            assert adata.X[i, j] == row["score"] and adata.layers["effective_k"][i, j] == row["effective_k"]
    assert {"patient_id", "cohort", "cancer_type"} <= set(adata.obs.columns)
    assert adata.uns["hquery"]["run_id"] == done.run_id and adata.uns["hquery"]["level"] == "slide"
    assert adata.uns["hquery"]["index_version"] == store.setting("current_index")


def test_h5ad_of_tiles_places_each_tile_at_its_centre(store, slide, tmp_path):
    import anndata

    done = export_h5ad(store, resolve_prompts(store, SETS[:1]), tmp_path / "tiles.h5ad", level="tile",
                       samples=[slide])
    adata = anndata.read_h5ad(done.path)
    tiles = store.sql(f"select tile_index, x, y from tiles where sample_id = '{slide}' order by tile_index").to_pylist()
    [size] = store.sql(f"select tile_size from slides where sample_id = '{slide}'").to_pylist()
    assert adata.n_obs == len(tiles) and adata.obsm["spatial"].shape == (len(tiles), 2)
    by_tile = dict(zip(adata.obs["tile_index"].astype(int), adata.obsm["spatial"]))
    for t in tiles:
        np.testing.assert_allclose(by_tile[t["tile_index"]], [t["x"] + size["tile_size"] / 2,
                                                              t["y"] + size["tile_size"] / 2])
    scores = recorded(store, done.run_id)
    np.testing.assert_array_equal(adata.X[:, 0], [scores[(slide, int(t), SETS[0])]["score"]
                                                  for t in adata.obs["tile_index"]])
    sc = pytest.importorskip("scanpy")
    import matplotlib

    matplotlib.use("Agg")
    again = sc.read_h5ad(done.path)  # scanpy's reader, and its spatial plot on the tile centres
    [axes] = sc.pl.spatial(again, color=SETS[0], spot_size=float(size["tile_size"]), show=False)
    assert len(axes.collections) == 1 and len(axes.collections[0].get_paths()) == len(tiles)  # a circle a tile


def test_export_commands(store, slide, tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["export", "qupath", slide, "--genes", SETS[0], "--out", str(tmp_path),
                               "--store", str(store.root)])
    assert out.exit_code == 0, out.output
    assert f"{slide}.geojson" in out.output and (tmp_path / f"{slide}.geojson").exists()
    out = runner.invoke(main, ["export", "h5ad", "--genes", SETS[0], "--out", str(tmp_path / "a.h5ad"),
                               "--store", str(store.root)])
    assert out.exit_code == 0, out.output
    assert "slides x 1 gene sets" in out.output
    bad = runner.invoke(main, ["export", "qupath", "NOPE", "--genes", SETS[0], "--out", str(tmp_path),
                               "--store", str(store.root)])
    assert bad.exit_code == 1 and "sample NOPE has no slide" in bad.output


def test_prompt_writes_geojson_and_h5ad_through_the_export_writers(store, tmp_path):
    import anndata

    two = [r["sample_id"] for r in store.sql("select sample_id from slides order by sample_id limit 2").to_pylist()]
    runner = CliRunner()
    base = ["prompt", "--genes", SETS[0], "--samples", ",".join(two), "--store", str(store.root)]
    out = runner.invoke(main, base + ["--level", "tile", "--format", "geojson", "--out", str(tmp_path / "qupath")])
    assert out.exit_code == 0, out.output
    run_id = store.sql("select run_id from prompt_runs order by created_at desc limit 1").to_pylist()[0]["run_id"]
    scores = recorded(store, run_id)
    for sid in two:  # a file a slide, each detection the run's recorded score for its tile
        features = json.loads((tmp_path / "qupath" / f"{sid}.geojson").read_text())["features"]
        assert len(features) == sum(1 for (s, _, _) in scores if s == sid) > 0
        for f in features:
            tile = int(f["properties"]["name"].rsplit(" ", 1)[1])
            assert f["properties"]["measurements"][SETS[0]] == scores[(sid, tile, SETS[0])]["score"]
    out = runner.invoke(main, base + ["--format", "h5ad", "--out", str(tmp_path / "two.h5ad")])
    assert out.exit_code == 0, out.output
    adata = anndata.read_h5ad(tmp_path / "two.h5ad")
    run_id = adata.uns["hquery"]["run_id"]
    assert sorted(adata.obs_names) == sorted(two)
    assert [adata[s, SETS[0]].X[0, 0] for s in two] == [recorded(store, run_id)[(s, None, SETS[0])]["score"]
                                                         for s in two]
    runs = store.sql("select count(*) as n from prompt_runs").to_pylist()[0]["n"]
    slide_level = runner.invoke(main, base + ["--format", "geojson", "--out", str(tmp_path / "q2")])
    no_out = runner.invoke(main, base + ["--format", "h5ad"])
    assert slide_level.exit_code == no_out.exit_code == 2
    assert "add --level tile" in slide_level.output and "needs --out" in no_out.output
    assert store.sql("select count(*) as n from prompt_runs").to_pylist()[0]["n"] == runs  # refused before running
    assert not (tmp_path / "q2").exists()


def test_a_report_holds_the_runs_provenance_scores_and_figures(store, tmp_path):
    run = export_h5ad(store, resolve_prompts(store, SETS), tmp_path / "a.h5ad")
    report = write_report(store, None, tmp_path / "report.html")
    page = report.path.read_text()
    assert report.run_id == run.run_id and report.n_rows == run.n_obs * 2
    assert store.setting("current_index") in page and f"Prompt run {run.run_id}" in page
    assert page.count("data:image/png;base64,") == report.n_figures == 1 + 2 * 2  # box plots, top/bottom per set
    assert "http://" not in page and "https://" not in page and "<script src" not in page  # self-contained
    with pytest.raises(InputError, match="no prompt run 'prompt_nope'"):
        write_report(store, "prompt_nope", tmp_path / "x.html")
    cli = CliRunner().invoke(main, ["export", "report", "--store", str(store.root), "--out", str(tmp_path / "x.html")])
    assert cli.exit_code == 2 and "RUN_ID or --last" in cli.output
    old = CliRunner().invoke(main, ["report", "--last", "--store", str(store.root), "--out", str(tmp_path / "o.html")])
    assert old.exit_code == 0 and "`hquery report` is now `hquery export report`" in old.output, old.output
    assert (tmp_path / "o.html").read_text().count("data:image/png;base64,") == report.n_figures
