"""Tumour-microenvironment archetypes: the classes from predicted scores agree with those from measured ones
better than chance on the demo, and the agreement is scikit-learn's."""

import json

import numpy as np
from click.testing import CliRunner
from sklearn.metrics import cohen_kappa_score

from hquery.cli import main
from hquery.evaluation.archetypes import ARCHETYPES, archetypes
from hquery.genesets import resolve_prompts


def test_predicted_archetypes_agree_with_measured_beyond_chance(clinic_store):
    store = clinic_store
    immune, fibrosis = (resolve_prompts(store, [p])[0] for p in ("INTERFERON_GAMMA", "EPITHELIAL_MESENCHYMAL"))
    report = archetypes(store, immune, fibrosis)
    both = sorted(set(report.classes["measured"]) & set(report.classes["predicted"]))
    measured = [report.classes["measured"][s] for s in both]
    predicted = [report.classes["predicted"][s] for s in both]
    assert report.n_compared == len(both) > 500
    assert report.kappa == cohen_kappa_score(measured, predicted) > 0.1
    assert report.accuracy > 0.25 + 0.1  # four classes of about a quarter each
    # a median split of the pairs: each measured class holds about a quarter only if the two scores are unrelated,
    # but the immune-enriched ones are half
    counts = {a: measured.count(a) for a in ARCHETYPES}
    assert counts[ARCHETYPES[0]] + counts[ARCHETYPES[1]] in range(len(both) // 2 - 1, len(both) // 2 + 2)
    stored = store.sql(f"select kappa, confusion from archetype_runs where run_id = '{report.run_id}'").to_pylist()[0]
    assert stored["kappa"] == report.kappa
    assert sum(sum(row.values()) for row in json.loads(stored["confusion"]).values()) == len(both)
    classes = store.sql(f"select source, count(*) n from archetype_classes where run_id = '{report.run_id}' "
                        "group by 1 order by 1").to_pylist()
    assert classes[0]["source"] == "measured" and classes[1]["n"] >= len(both)
    cli = CliRunner().invoke(main, ["clinic", "archetypes", "--immune", "INTERFERON_GAMMA", "--fibrosis",
                                    "EPITHELIAL_MESENCHYMAL", "--store", str(store.root)])
    assert cli.exit_code == 0 and "Cohen's kappa" in cli.output, cli.output
    assert np.isclose(float(cli.output.split("Cohen's kappa ")[1].split()[0]), report.kappa, atol=1e-3)
