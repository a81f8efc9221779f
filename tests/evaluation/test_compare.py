"""`hquery eval compare`: Soft-kNN, MLP and HistoPrism on the same folds of the small demo."""

import json

import numpy as np
from click.testing import CliRunner

from hquery.cli import main
from tests.conftest import copy_store


def test_eval_compare_puts_the_routes_side_by_side(demo_store, tmp_path):
    store = copy_store(demo_store, tmp_path / "store")
    png = tmp_path / "routes.png"
    result = CliRunner().invoke(main, ["eval", "compare", "--folds", "2", "--epochs", "8", "--quiet",
                                       "--plot", str(png), "--format", "json", "--store", str(store.root)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    rows = {r["gene_set"]: r for r in out["gene_sets"]}
    assert len(rows) == 50
    for r in rows.values():
        assert all(np.isfinite(r[key]) for key in ("softknn_r2", "mlp_r2", "ridge_type_r2", "ensemble_r2", "auto_r2",
                                                    "histoprism_r2", "histoprism_r", "softknn_r_type",
                                                    "histoprism_r_type"))
    # HistoPrism predicts the whole collection's genes; its held-out ssGSEA follows the measured one
    assert np.mean([r["histoprism_r"] for r in rows.values()]) > 0.3
    assert out["hvg50_pcc"]["histoprism"]["slide"]["mean"] > out["hvg50_pcc"]["ridge"]["slide"]["mean"]
    assert png.stat().st_size > 10_000
    # HistoPrism's rows sit next to the spectrum's in the catalog
    methods = store.sql(f"select method, count(*) n from prompt_eval_results where eval_id = '{out['eval_id']}' "
                        "group by 1 order by 1").to_pylist()
    assert methods == [{"method": m, "n": 50}
                       for m in ("auto", "ensemble", "histoprism", "mlp", "ridge_type", "softknn")]
    # HistoPrism is a fifth route: R² after a line from the other folds, the line on all of them kept for prompts,
    # auto choosing among all five
    lines = store.sql(f"select line_slope, line_intercept, r2, r2_calibrated from prompt_eval_results "
                      f"where eval_id = '{out['eval_id']}' and method = 'histoprism'").to_pylist()
    assert all(r["line_slope"] is not None and r["r2_calibrated"] is not None for r in lines)
    assert np.mean([r["r2_calibrated"] for r in lines]) > np.mean([r["r2"] for r in lines])
    assert {r["route"] for r in rows.values()} <= {"softknn", "mlp", "ridge_type", "ensemble", "histoprism"}
    params = store.sql(f"select params from prompt_eval_runs where eval_id = '{out['eval_id']}'").to_pylist()[0]
    assert json.loads(params["params"])["routes"]["histoprism"]["panel"] == "collection:hallmark"
