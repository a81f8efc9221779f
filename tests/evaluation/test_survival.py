"""Survival by a gene set's score: the split and the tests on hand-made data against lifelines, then the demo's
built-in hazard (proliferation shortens survival) found from the slides and the RNA, and a set it ignores not."""

import numpy as np
import pytest
from click.testing import CliRunner
from lifelines.statistics import logrank_test

from hquery.cli import main
from hquery.errors import InputError
from hquery.evaluation.survival import _group_summary, _split, survival
from hquery.genesets import resolve_prompts


def test_median_and_tertile_splits():
    x = np.arange(12.0)
    assert (_split(x, "median") == "high").sum() == 6 and _split(x, "median")[0] == "low"
    assert [(_split(x, "tertile") == g).sum() for g in ("low", "middle", "high")] == [4, 4, 4]


def test_two_groups_log_rank_and_medians_are_lifelines():
    rng = np.random.default_rng(1)
    t = np.concatenate([rng.exponential(10, 40), rng.exponential(30, 40)])
    e = (rng.random(80) < 0.8).astype(int)
    groups = np.array(["high"] * 40 + ["low"] * 40, dtype=object)
    from lifelines.statistics import multivariate_logrank_test

    assert multivariate_logrank_test(t, groups, e).p_value == pytest.approx(
        logrank_test(t[:40], t[40:], e[:40], e[40:]).p_value)
    summary = _group_summary(t, e, groups)
    assert list(summary) == ["low", "high"] and summary["high"]["events"] == int(e[:40].sum())
    assert summary["high"]["median_months"] < summary["low"]["median_months"]


def test_proliferation_shortens_survival_in_the_demo_and_a_hidden_program_does_not(clinic_store):
    store = clinic_store
    report = survival(store, resolve_prompts(store, ["G2M", "ESTROGEN_RESPONSE_EARLY"]), "os_months", "os_event",
                      source="both")
    found = {(r.gene_set, r.source): r for r in report.results}
    for source in ("predicted", "measured"):
        hit = found["HALLMARK_G2M_CHECKPOINT", source]
        assert hit.logrank_p < 1e-3 and hit.hr_lower > 1.1, hit
        assert hit.groups["high"]["median_months"] < hit.groups["low"]["median_months"]
        assert found["HALLMARK_ESTROGEN_RESPONSE_EARLY", source].logrank_p > 0.01
    rows = store.sql(f"select count(*) n from survival_results where run_id = '{report.run_id}'").to_pylist()
    assert rows == [{"n": 4}] and all(p.stat().st_size > 10_000 for p in report.plots.values())
    with pytest.raises(InputError, match="an event is 1 .* or 0"):
        survival(store, resolve_prompts(store, ["G2M"]), "os_months", "pdl1")
    cli = CliRunner().invoke(main, ["clinic", "survival", "--genes", "G2M", "--time", "os_months", "--event", "os_event",
                                    "--split", "tertile", "--source", "measured", "--store", str(store.root)])
    assert cli.exit_code == 0 and "HR per SD" in cli.output and "middle:" in cli.output, cli.output
