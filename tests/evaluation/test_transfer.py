"""Cross-cohort evaluation on the demo's two hospitals: heads fitted on the first, tested on the second (its own
stain, scanner and case mix), beside the second site's own cross-validation."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hquery.cli import main
from hquery.errors import InputError
from hquery.evaluation.transfer import evaluate_transfer
from hquery.training import AlignmentConfig
from hquery.training.histoprism import HistoPrismConfig
from tests.conftest import copy_store

QUICK = AlignmentConfig(max_epochs=40)
DRAWN = ["HALLMARK_G2M_CHECKPOINT", "HALLMARK_E2F_TARGETS", "HALLMARK_HYPOXIA", "HALLMARK_GLYCOLYSIS",
         "HALLMARK_INTERFERON_GAMMA_RESPONSE"]


def test_a_second_site_shows_what_transfers_and_what_does_not(two_hospitals, tmp_path):
    store = copy_store(two_hospitals, tmp_path / "store")
    report = evaluate_transfer(store, ["demo"], "site2", folds=3, config=QUICK,
                               histoprism=HistoPrismConfig(max_epochs=20), workers=2)
    n_pairs = store.sql("select count(*) n from pairs").to_pylist()[0]["n"]
    assert report.n_train + report.n_test == n_pairs and report.n_test > 250
    assert report.library_cohorts == ["demo", "demo_reference"]
    profiles = store.sql("select count(*) n from samples where has_expression and cohort <> 'site2'")
    assert report.n_library == profiles.to_pylist()[0]["n"]
    chance = report.recall["transfer"]["chance"]["he_to_rna"]["recall@10"]
    for setting in ("transfer", "in_cohort"):
        assert report.recall[setting]["aligned"]["he_to_rna"]["recall@10"] > 5 * chance
    means = report.means(DRAWN)
    # measured (seed 0, drawn sets): the ridge+type floor, fitted on the first site's raw features, falls from R²
    # 0.67 in the site's own folds to -0.41 across the stain shift; the aligned space's neighbours carry over
    # (Soft-kNN 0.51 against 0.51, the MLP 0.57 against 0.58); H&E->RNA R@10 0.88 against 0.72 in-cohort, where
    # the folds train on fewer pairs (chance 0.10)
    floor_gap = means["in_cohort"]["ridge_type"]["r2_calibrated"] - means["transfer"]["ridge_type"]["r2_calibrated"]
    assert means["in_cohort"]["ridge_type"]["r2_calibrated"] > 0.4 and floor_gap > 0.3, means
    assert means["transfer"]["softknn"]["r2_calibrated"] > 0.3
    # HistoPrism, its line fitted on the first site's own held-out predictions, never on a test slide's truth
    # (measured at 60 epochs: R² 0.58 across the shift against 0.56 in-cohort)
    assert means["transfer"]["histoprism"]["r2_calibrated"] > 0.3 and means["in_cohort"]["histoprism"]["pearson_r"] > 0.5
    rows = store.sql(f"select setting, count(*) n from transfer_results where transfer_id = '{report.transfer_id}' "
                     "group by all order by setting").to_pylist()
    assert [r["setting"] for r in rows] == ["in_cohort", "transfer"] and rows[0]["n"] == rows[1]["n"]
    with pytest.raises(InputError, match="both trained and tested"):
        evaluate_transfer(store, ["demo", "site2"], "site2")
    with pytest.raises(InputError, match="no cohort 'site3'; cohorts: demo, demo_reference, site2"):
        evaluate_transfer(store, ["demo"], "site3")


def test_cli_eval_transfer(two_hospitals, tmp_path):
    store = copy_store(two_hospitals, tmp_path / "store")
    result = CliRunner().invoke(main, ["eval", "transfer", "--train", "site2", "--test", "demo", "--folds", "2",
                                       "--epochs", "10", "--format", "json", "--store", str(store.root)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["test_cohort"] == "demo" and set(out["means"]) == {"transfer", "in_cohort"}
    assert np.isfinite(out["means"]["transfer"]["ridge_type"]["r2_calibrated"]) and out["transfer_id"]
    assert "histoprism" not in out["means"]["transfer"]  # the store serves no HistoPrism
