"""Clinical association: the tests on hand-made data against scipy, then the demo's built-in associations found and
its negative control not."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from hquery.cli import main
from hquery.errors import InputError
from hquery.evaluation.association import _per_patient, _test, associate
from hquery.genesets import resolve_prompts

IFNG = "HALLMARK_INTERFERON_GAMMA_RESPONSE"


def test_two_groups_get_mann_whitney_and_a_signed_rank_biserial():
    labels, x = ["hi"] * 4 + ["lo"] * 5, np.array([9.0, 8, 7, 6.5, 1, 2, 3, 4, 6])
    row = _test(labels, x, "categorical", [], "hand-made")
    expected = stats.mannwhitneyu(x[:4], x[4:], alternative="two-sided")
    assert (row["test"], row["statistic"], row["p_value"]) == ("mann_whitney", expected.statistic, expected.pvalue)
    assert row["effect"] == pytest.approx(1.0)  # every "hi" above every "lo"
    flipped = _test(["a"] * 4 + ["b"] * 5, x[::-1].copy(), "categorical", [], "hand-made")
    assert flipped["effect"] == pytest.approx(2 * 4 / 20 - 1)  # "a" (6, 4, 3, 2) is above "b" only where b is 1


def test_three_groups_get_kruskal_wallis_and_small_groups_are_left_out_with_a_note():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 10), rng.normal(1, 1, 10), rng.normal(2, 1, 10), [5.0, 6.0]])
    labels = ["a"] * 10 + ["b"] * 10 + ["c"] * 10 + ["d"] * 2
    notes = []
    row = _test(labels, x, "categorical", notes, "hand-made")
    h, p = stats.kruskal(x[:10], x[10:20], x[20:30])
    assert (row["test"], row["n"], row["n_groups"]) == ("kruskal_wallis", 30, 3)
    assert (row["statistic"], row["p_value"]) == (pytest.approx(h), pytest.approx(p))
    assert row["effect"] == pytest.approx(h / 29) and "group(s) d" in notes[0]


def test_numbers_get_spearman():
    x = np.array([1.0, 3, 2, 5, 4, 7, 6])
    row = _test([str(v) for v in range(7)], x, "numeric", [], "hand-made")
    rho, p = stats.spearmanr(range(7), x)
    assert (row["test"], row["effect"], row["p_value"]) == ("spearman", pytest.approx(rho), pytest.approx(p))


def test_a_patient_counts_once_per_value():
    scores = {"s1": 1.0, "s2": 3.0, "s3": 10.0, "s4": 5.0}
    values = {"s1": "x", "s2": "x", "s3": "y", "s4": "x"}
    patients = {"s1": "p1", "s2": "p1", "s3": "p1", "s4": "p2"}
    labels, x = _per_patient(scores, values, None, patients)[None]
    assert sorted(zip(labels, x.tolist())) == [("x", 2.0), ("x", 5.0), ("y", 10.0)]


@pytest.fixture
def clinic(clinic_store):
    return clinic_store


def test_the_demos_built_in_associations_are_found_and_its_negative_control_is_not(clinic):
    gene_sets = resolve_prompts(clinic, ["INTERFERON_GAMMA", "G2M"])
    pdl1 = associate(clinic, gene_sets, "pdl1", source="both")
    found = {(r.gene_set, r.source): r for r in pdl1.results}
    for source in ("predicted", "measured"):  # PD-L1 groups follow the immune program, from the slide or the RNA
        hit = found[IFNG, source]
        assert hit.test == "kruskal_wallis" and hit.q_value < 1e-3, hit
        assert hit.groups["high"]["median"] > hit.groups["low"]["median"] > hit.groups["negative"]["median"]
    control = associate(clinic, gene_sets, "negative_control", source="both", plot=False)
    assert all(r.p_value > 0.05 for r in control.results), control.results
    survival = associate(clinic, resolve_prompts(clinic, ["G2M"]), "os_months", source="measured", plot=False)
    assert survival.kind == "numeric" and survival.results[0].effect < -0.1 and survival.results[0].p_value < 1e-3
    within = associate(clinic, gene_sets[:1], "pdl1", source="measured", within="cancer_type", plot=False)
    strata = {r.stratum for r in within.results}
    assert None in strata and len(strata) > 3
    stored = clinic.sql(f"select count(*) n from association_results where run_id = '{pdl1.run_id}'").to_pylist()
    assert stored == [{"n": 4}] and all(p.exists() and p.stat().st_size > 10_000 for p in pdl1.plots.values())
    with pytest.raises(InputError, match="no sample has a value for column 'nope'.*pdl1"):
        associate(clinic, gene_sets, "nope")
    with pytest.raises(InputError, match="column 'pdl1' is not numeric"):
        associate(clinic, gene_sets, "pdl1", kind="numeric")


def test_cli_associate_prints_the_tests_and_the_plot(clinic):
    args = ["--genes", "INTERFERON_GAMMA", "--by", "pdl1", "--source", "measured", "--store", str(clinic.root)]
    result = CliRunner().invoke(main, ["clinic", "associate", *args])
    assert result.exit_code == 0, result.output
    assert "kruskal_wallis" in result.output and "plot: " in result.output and "epsilon_squared" in result.output
    # the old top-level name still works for one release, says the new one, and prints the same tests
    old = CliRunner().invoke(main, ["associate", *args])
    assert old.exit_code == 0 and "`hquery associate` is now `hquery clinic associate`" in old.output
    table = lambda text: [line for line in text.splitlines() if "kruskal_wallis" in line]  # noqa: E731
    assert table(old.output) == table(result.output) != []
    listed = [line.split()[0] for line in CliRunner().invoke(main, ["--help"]).output.splitlines() if line.strip()]
    assert "clinic" in listed and "associate" not in listed  # the old name is hidden from the command list
    as_json = CliRunner().invoke(main, ["clinic", "associate", "--genes", "G2M", "--by", "os_months", "--format", "json",
                                        "--store", str(clinic.root)])
    assert json.loads(as_json.output)["results"][0]["test"] == "spearman"
