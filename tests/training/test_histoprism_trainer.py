"""HistoPrism on the small demo store: cross-validation against ridge, the recorded version, prompting with it."""

import numpy as np
import pytest

from hquery.errors import GeneSetTooSmall, InputError, NotReadyError
from hquery.genesets import resolve_prompts
from hquery.library import Library
from hquery.retrieval import run_prompt
from hquery.training.bags import load_slide_bags
from hquery.training.histoprism import HistoPrismConfig, fit_histoprism
from hquery.training.histoprism_trainer import gene_panel, load_histoprism, train_histoprism
from tests.conftest import copy_store

CONFIG = HistoPrismConfig(dim=64, max_epochs=25, patience=25)


@pytest.fixture(scope="module")
def trained(demo_store, tmp_path_factory):
    store = copy_store(demo_store, tmp_path_factory.mktemp("histoprism") / "store")
    report = train_histoprism(store, "hvg:1000", CONFIG, folds=3, workers=2)
    return store, report


def test_histoprism_beats_ridge_on_frozen_features_and_the_ablation_is_reported(trained):
    store, report = trained
    summary = report.cv.summary()
    slide = {m: summary[m]["slide"]["pcc_hvg50"]["mean"] for m in summary}
    assert slide["histoprism"] > slide["ridge"] + 0.05
    assert slide["histoprism"] > slide["no_conditioning"] + 0.05  # the cancer type is what it adds here
    assert summary["histoprism"]["spot"]["pcc_hvg50"]["mean"] > summary["ridge"]["spot"]["pcc_hvg50"]["mean"]
    # every number is in the catalog, per fold, for plain SQL
    rows = store.sql(f"select method, direction, count(*) n from model_metrics where model_version = "
                     f"'{report.version}' and metric = 'pcc_hvg50' group by all order by all").to_pylist()
    assert {(r["method"], r["direction"]) for r in rows} == {
        (m, level) for m in ("histoprism", "no_conditioning", "ridge", "ridge_type") for level in ("slide", "spot")}
    assert all(r["n"] == 3 for r in rows)
    # GPC per cancer type, at both levels, for every method
    types = {r["cancer_type"] for r in store.sql("select distinct cancer_type from pairs").to_pylist()}
    for level in ("slide", "spot"):
        assert set(report.coherence[level]["histoprism"]) == types | {"all"}
        assert -1 < report.coherence[level]["histoprism"]["all"] < 1
    # per pathway, the programs the demo draws into the tiles are more coherent than those it leaves invisible
    from hquery.demo.cohort import PROGRAMS

    by_pathway = report.pathway_coherence["slide"]["histoprism"]
    visible = [by_pathway[h] for p in PROGRAMS if p.visible for h in p.hallmarks if h in by_pathway]
    invisible = [by_pathway[h] for p in PROGRAMS if not p.visible for h in p.hallmarks if h in by_pathway]
    assert len(visible) >= 4 and len(invisible) >= 3
    assert np.nanmean(visible) > np.nanmean(invisible) + 0.05


def test_the_recorded_model_is_the_fit_on_every_pair(trained):
    store, report = trained
    fitted, params = load_histoprism(store)
    assert params["version"] == report.version == store.setting("histoprism_model")
    assert params["panel"] == "hvg:1000" and len(fitted.genes) == 1000
    panel = gene_panel(store, "hvg:1000")
    bags = load_slide_bags(store, genes=panel.positions)
    again = fit_histoprism(bags, CONFIG)
    probe = bags.subset(np.arange(20))
    np.testing.assert_allclose(fitted.predict(probe)[0], again.predict(probe)[0], rtol=1e-5, atol=1e-5)
    assert list(fitted.type_ids(["not-a-type", None, fitted.cancer_types[1]])) == [0, 0, 2]


def test_prompting_with_histoprism_records_the_method(trained):
    store, report = trained
    fitted, _ = load_histoprism(store)
    sets = [gs for gs in resolve_prompts(store, collection="hallmark")
            if len(set(gs.members) & set(fitted.genes)) >= 10][:3]
    assert len(sets) == 3
    run = run_prompt(store, sets, method="histoprism")
    n_slides = store.sql("select count(*) n from samples where has_slide").to_pylist()[0]["n"]
    assert run.results.num_rows == 3 * n_slides
    assert all(np.isfinite(run.results["score"].to_numpy()))
    recorded = store.sql(f"select distinct method, model_version, level from prompt_results_all "
                         f"where run_id = '{run.run_id}'").to_pylist()
    assert recorded == [{"method": "histoprism", "model_version": report.version, "level": "slide"}]
    # on the slides it learnt from, the predicted profile's ssGSEA follows the measured profile's
    library = Library(store)
    truth, _ = library.scores(sets, library.match(sets))
    by = {(r["sample_id"], r["gene_set"]): r["score"] for r in run.results.to_pylist()}
    pairs = [s for s, _ in store.query("pairs")]
    r = [np.corrcoef([by[s, gs.name] for s in pairs], truth[[library.row[s] for s in pairs], j])[0, 1]
         for j, gs in enumerate(sets)]
    assert np.mean(r) > 0.3

    tiles = run_prompt(store, sets[:1], method="histoprism", level="tile", cohort="demo", record=False)
    n_tiles = store.sql("select count(*) n from tiles join samples using (sample_id) where cohort = 'demo'"
                        ).to_pylist()[0]["n"]
    assert tiles.results.num_rows == n_tiles
    assert len(set(tiles.results["tile_index"].to_pylist())) > 1


def test_a_gene_set_outside_the_panel_is_a_clear_error(trained):
    store, _ = trained
    fitted, _ = load_histoprism(store)
    outside = [g for g in Library(store).universe if g not in set(fitted.genes)][:8]
    with pytest.raises(GeneSetTooSmall, match=r"HistoPrism histoprism_\w+'s 1000-gene universe.*panel collection:hallmark"):
        run_prompt(store, resolve_prompts(store, [",".join(outside)]), method="histoprism", record=False)


def test_bad_panels_and_a_missing_model_are_clear_errors(demo_store, tmp_path):
    with pytest.raises(InputError, match=r"use hvg:N .* or collection:NAME"):
        gene_panel(demo_store, "top:100")
    with pytest.raises(InputError, match="N >= 50"):
        gene_panel(demo_store, "hvg:10")
    with pytest.raises(NotReadyError, match="no HistoPrism model yet"):
        load_histoprism(demo_store)
    collection = gene_panel(demo_store, "collection:hallmark")
    assert len(collection.genes) == len(set(collection.genes)) > 1000


def test_cli_trains_and_prompts_with_histoprism(demo_store, tmp_path):
    from click.testing import CliRunner

    from hquery.cli import main

    store = copy_store(demo_store, tmp_path / "store")

    def invoke(*args):
        result = CliRunner().invoke(main, [*args, "--store", str(store.root)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    out = invoke("train", "histoprism", "--panel", "hvg:300", "--folds", "2", "--epochs", "3", "--quiet")
    assert "300 genes (hvg:300)" in out and "now the current one" in out
    for row in ("HistoPrism", "without cross-attention", "ridge on frozen features", "ridge + cancer type"):
        assert row in out
    assert "GPC spot" in out
    fitted, _ = load_histoprism(store)
    name = next(gs.name for gs in resolve_prompts(store, collection="hallmark")
                if len(set(gs.members) & set(fitted.genes)) >= 5)
    out = invoke("prompt", "--genes", name, "--method", "histoprism", "--limit", "3")
    assert "ssGSEA on HistoPrism's predicted expression" in out
    assert store.sql("select distinct method from prompt_runs").to_pylist() == [{"method": "histoprism"}]
