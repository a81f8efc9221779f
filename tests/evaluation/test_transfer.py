"""Cross-cohort evaluation on the small demo split into two sites: heads fitted on one site, tested on the other,
beside the second site's own cross-validation."""

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from hquery.cli import main
from hquery.errors import InputError
from hquery.evaluation.transfer import evaluate_transfer
from hquery.ingest import ingest_cohort
from hquery.ingest.genesets import add_builtin_gene_data
from hquery.store import Store
from hquery.training import AlignmentConfig

QUICK = AlignmentConfig(max_epochs=40)
DRAWN = ["HALLMARK_G2M_CHECKPOINT", "HALLMARK_E2F_TARGETS", "HALLMARK_HYPOXIA", "HALLMARK_GLYCOLYSIS",
         "HALLMARK_INTERFERON_GAMMA_RESPONSE"]


@pytest.fixture(scope="module")
def two_sites(small_demo, tmp_path_factory):
    """The small demo's pairs as two cohorts (patients alternating), its reference library as a third."""
    root = tmp_path_factory.mktemp("sites")
    store = Store.init(root / "store")
    add_builtin_gene_data(store)
    ingest_cohort(store, small_demo.reference_manifest, expression=small_demo.reference_expression,
                  name="reference")
    manifest = pl.read_csv(small_demo.cohort_manifest)
    expression = pl.read_parquet(small_demo.cohort_expression)
    for site, parity in (("site_a", 0), ("site_b", 1)):
        rows = manifest.filter(pl.col("patient_id").str.slice(6).cast(pl.Int64) % 2 == parity)
        rows.write_csv(small_demo.root / "cohort" / f"{site}.csv")
        expression.filter(pl.col("sample_id").is_in(rows["sample_id"].to_list())).write_parquet(
            small_demo.root / "cohort" / f"{site}.parquet")
        ingest_cohort(store, small_demo.root / "cohort" / f"{site}.csv",
                      expression=small_demo.root / "cohort" / f"{site}.parquet", name=site, encoder="he-features")
    return store


def test_heads_fitted_on_one_site_score_the_other_about_as_well_as_its_own(two_sites):
    report = evaluate_transfer(two_sites, ["site_a"], "site_b", folds=3, config=QUICK)
    n_pairs = two_sites.sql("select count(*) n from pairs").to_pylist()[0]["n"]
    assert report.n_train + report.n_test == n_pairs and min(report.n_train, report.n_test) > 300
    assert report.library_cohorts == ["reference", "site_a"]
    profiles = two_sites.sql("select count(*) n from samples where has_expression and cohort <> 'site_b'")
    assert report.n_library == profiles.to_pylist()[0]["n"]
    aligned, chance = report.recall["transfer"]["aligned"]["he_to_rna"], report.recall["transfer"]["chance"]
    assert aligned["recall@10"] > 5 * chance["he_to_rna"]["recall@10"]
    own = report.recall["in_cohort"]["aligned"]["he_to_rna"]["recall@10"]
    assert own > 5 * chance["he_to_rna"]["recall@10"]
    means = report.means(DRAWN)
    for setting in ("transfer", "in_cohort"):
        assert means[setting]["ridge_type"]["r2_calibrated"] > 0.3 and means[setting]["softknn"]["r2_calibrated"] > 0.3
    # one world split in two: the heads carry over, so the gap is small either way
    gap = means["in_cohort"]["softknn"]["r2_calibrated"] - means["transfer"]["softknn"]["r2_calibrated"]
    assert abs(gap) < 0.15, means
    with pytest.raises(InputError, match="both trained and tested"):
        evaluate_transfer(two_sites, ["site_a", "site_b"], "site_b")
    with pytest.raises(InputError, match="no cohort 'site_c'; cohorts: reference, site_a, site_b"):
        evaluate_transfer(two_sites, ["site_a"], "site_c")


def test_cli_eval_transfer(two_sites):
    result = CliRunner().invoke(main, ["eval", "transfer", "--train", "site_b", "--test", "site_a", "--folds", "2",
                                       "--epochs", "10", "--format", "json", "--store", str(two_sites.root)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["test_cohort"] == "site_a" and set(out["means"]) == {"transfer", "in_cohort"}
    assert np.isfinite(out["means"]["transfer"]["ridge_type"]["r2_calibrated"])
