"""Prompting end to end on the small demo store: Soft-kNN, uncertainty, the score cache, recorded runs and SQL."""

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from hquery.cli import main
from hquery.errors import GeneSetTooSmall, InputError
from hquery.genesets import resolve_prompts
from hquery.ingest import ingest_cohort
from hquery.library import Library
from hquery.retrieval import RNAIndex
from hquery.retrieval.neighbours import NeighbourRule, library_neighbours
from hquery.retrieval.prompt import aligned_vectors, run_prompt, score_measured
from hquery.retrieval.softknn import SoftKNN
from hquery.scoring import ssgsea
from tests.conftest import copy_store

G2M = "HALLMARK_G2M_CHECKPOINT"


@pytest.fixture(scope="module")
def indexed(indexed_store):
    return indexed_store


def slide_queries(store, sample_ids):
    """The index, library, query keys, vectors and patients for ``sample_ids``' slides."""
    index, library = RNAIndex.load(store), Library(store)
    keys, queries = aligned_vectors(store, index.model_version, "slide", sample_ids)
    patient_of = dict(store.query("sample_patients"))
    return index, library, keys, queries, np.array([patient_of[s] for s, _ in keys]), patient_of


@pytest.fixture
def fresh(indexed, tmp_path):
    return copy_store(indexed, tmp_path / "store")


def test_every_slide_gets_a_score_with_uncertainty(indexed):
    run = run_prompt(indexed, resolve_prompts(indexed, ["G2M"]), record=False)
    n_slides = indexed.sql("select count(*) n from samples where has_slide").to_pylist()[0]["n"]
    frame = pl.from_arrow(run.results)
    assert frame.height == n_slides and frame["sample_id"].n_unique() == n_slides
    assert frame["score"].is_finite().all() and (frame["dispersion"] >= 0).all()
    assert frame["effective_k"].min() >= 1 and frame["effective_k"].max() <= 32
    assert frame["score"].std() > 0 and run.matches[0].n_found >= 195  # the demo universe lacks a few genes


def test_score_is_the_weighted_mean_of_the_neighbours_library_scores(indexed):
    gene_sets = resolve_prompts(indexed, ["G2M", "HYPOXIA"])
    run = run_prompt(indexed, gene_sets, knn=SoftKNN(k=8, tau=0.1), neighbours=NeighbourRule(()), method="softknn",
                     record=False)
    library = Library(indexed)
    expected_library = ssgsea(library.expression(), [m.positions for m in library.match(gene_sets)])
    index = RNAIndex.load(indexed)
    keys, queries = aligned_vectors(indexed, index.model_version, "slide", [run.results["sample_id"][0].as_py()])
    patient = dict(indexed.query("sample_patients"))[keys[0][0]]
    ids, sims = index.search(queries, 8 + 5)
    own = [dict(indexed.query("sample_patients"))[s] == patient for s in ids[0]]
    ids, sims = ids[0][~np.array(own)][:8], sims[0][~np.array(own)][:8]
    sims = sims.astype(np.float64)
    w = np.exp(sims / 0.1) / np.exp(sims / 0.1).sum()
    manual = w @ expected_library[[library.row[s] for s in ids]]
    got = pl.from_arrow(run.results).filter(pl.col("sample_id") == keys[0][0]).sort("gene_set")["score"].to_numpy()
    np.testing.assert_allclose(got, manual if gene_sets[0].name < gene_sets[1].name else manual[::-1], rtol=1e-5)


def test_each_score_stands_among_the_library_by_percentile_and_within_its_type(fresh):
    gene_sets = resolve_prompts(fresh, ["G2M"])
    run_prompt(fresh, gene_sets)
    library = Library(fresh)
    es = ssgsea(library.expression(), [m.positions for m in library.match(gene_sets)])[:, 0]
    types = {r["sample_id"]: r["cancer_type"] for r in fresh.sql("select sample_id, cancer_type from samples")
             .to_pylist()}
    library_types = np.array([types[s] for s in library.sample_ids])
    rows = fresh.sql(f"select sample_id, cancer_type, score, percentile, type_z from prompt_results "
                     f"where gene_set = '{G2M}'").to_pylist()
    for row in rows[:25]:
        below = (es < row["score"]).mean() + (es == row["score"]).mean() / 2
        assert row["percentile"] == pytest.approx(100 * below)
        own = es[library_types == row["cancer_type"]]
        assert row["type_z"] == pytest.approx((row["score"] - own.mean()) / own.std(ddof=1))
    z = np.array([r["type_z"] for r in rows])
    assert np.isfinite(z).all() and 0 < np.array([r["percentile"] for r in rows]).std()


def test_measured_scores_are_the_librarys_own_and_sit_beside_the_predicted(fresh):
    gene_sets = resolve_prompts(fresh, ["G2M"])
    predicted = run_prompt(fresh, gene_sets)
    measured = score_measured(fresh, gene_sets)
    library = Library(fresh)
    es = ssgsea(library.expression(), [m.positions for m in library.match(gene_sets)])[:, 0]
    frame = pl.from_arrow(measured.results)
    assert frame.height == len(library) and set(frame["route"]) == {"measured"}
    np.testing.assert_allclose(frame["score"].to_numpy(), es[[library.row[s] for s in frame["sample_id"]]],
                               rtol=1e-9)
    counts = {r["source"]: r["n"] for r in fresh.sql(
        f"select source, count(*) n from prompt_results where gene_set = '{G2M}' group by 1").to_pylist()}
    assert counts == {"predicted": predicted.results.num_rows, "measured": len(library)}
    paired = fresh.sql(f"select corr(p.score, m.score) r, count(*) n from prompt_results p "
                       f"join prompt_results m using (sample_id, gene_set) "
                       f"where p.source = 'predicted' and m.source = 'measured' and gene_set = '{G2M}'").to_pylist()[0]
    assert paired["n"] > 100 and paired["r"] > 0.5  # predicted from the slide, measured from its RNA
    runner = CliRunner()
    shown = runner.invoke(main, ["score", "--genes", "G2M", "--limit", "3", "--store", str(fresh.root)])
    assert shown.exit_code == 0 and "from each sample's measured expression" in shown.output, shown.output
    assert runner.invoke(main, ["score", "--genes", "G2M", "--samples", "", "--store", str(fresh.root)]).exit_code == 2


def test_neighbours_never_come_from_the_querys_own_patient(indexed):
    paired = [r[0] for r in indexed.query("pairs")][:100]
    index, library, keys, queries, patients, patient_of = slide_queries(indexed, paired)
    rows, _, _ = library_neighbours(indexed, index, library, queries, [s for s, _ in keys], 16)
    neighbour_patients = np.array([[patient_of[library.sample_ids[r]] for r in row] for row in rows])
    assert not (neighbour_patients == patients[:, None]).any()
    # without the rule a paired slide would often find its own profile
    ids, _ = index.search(queries, 16)
    assert any(s in row for s, row in zip(paired, ids))


def test_cache_is_reused_and_invalidated_by_a_library_change(fresh, tmp_path):
    sets = resolve_prompts(fresh, ["MKI67,TOP2A,CDK1,CCNB1,BUB1,AURKA"])  # a set no other test scores
    first = run_prompt(fresh, sets)
    second = run_prompt(fresh, sets)
    assert first.computed_sets == 1 and second.computed_sets == 0
    np.testing.assert_array_equal(first.results["score"].to_numpy(), second.results["score"].to_numpy())

    universe = Library(fresh).universe
    rng = np.random.default_rng(5)
    pl.DataFrame([{"sample_id": f"NEW{i}", "patient_id": f"NEWP{i}", "cancer_type": "BRCA", "slide_path": ""}
                  for i in range(6)]).write_csv(tmp_path / "new.csv")
    counts = rng.poisson(20, size=(6, len(universe)))
    pl.DataFrame({"sample_id": [f"NEW{i}" for i in range(6)],
                  **{g: counts[:, j] for j, g in enumerate(universe)}}).write_csv(tmp_path / "new_expr.csv")
    before = Library(fresh).version
    ingest_cohort(fresh, tmp_path / "new.csv", expression=tmp_path / "new_expr.csv", name="more_reference")
    library = Library(fresh)
    assert library.version != before and len(library) == len(Library(fresh).sample_ids)
    third = run_prompt(fresh, sets)
    assert third.computed_sets == 1 and any("build the index again" in n for n in third.notes)
    stored = fresh.sql("select distinct library_version v from library_scores").to_pylist()
    assert stored == [{"v": library.version}]  # the old version's rows are gone
    scores, computed = library.scores(sets, library.match(sets))
    assert computed == 0
    np.testing.assert_allclose(scores[:, 0], ssgsea(library.expression(), [library.match(sets)[0].positions])[:, 0])


def test_runs_are_recorded_and_queryable_in_sql(fresh):
    run = run_prompt(fresh, resolve_prompts(fresh, ["G2M", "HYPOXIA"]))
    runs = fresh.sql("select run_id, method, aggregate, level, k, tau, n_samples from prompt_runs").to_pylist()
    assert runs == [{"run_id": run.run_id, "method": "auto", "aggregate": None, "level": "slide", "k": 32,
                     "tau": 0.05, "n_samples": run.results.num_rows // 2}]
    by_type = fresh.sql(f"select cancer_type, avg(score) s, count(*) n from prompt_results "
                        f"where gene_set = '{G2M}' group by 1 order by 1").to_pylist()
    assert len(by_type) == 4 and sum(r["n"] for r in by_type) == run.results.num_rows // 2
    wide = fresh.sql(f"select sample_id, scores['{G2M}'] g2m, scores['HALLMARK_HYPOXIA'] hyp "
                     "from prompt_results_wide").to_pylist()
    assert len(wide) == run.results.num_rows // 2 and all(r["g2m"] is not None and r["hyp"] is not None for r in wide)
    sets = fresh.sql("select gene_set, n_members, n_found from prompt_gene_sets order by 1").to_pylist()
    assert sets == [{"gene_set": m.name, "n_members": 200, "n_found": m.n_found}
                    for m in sorted(run.matches, key=lambda m: m.name)]
    again = run_prompt(fresh, resolve_prompts(fresh, ["G2M"]))
    latest = fresh.sql(f"select distinct run_id from prompt_results where gene_set = '{G2M}'").to_pylist()
    assert latest == [{"run_id": again.run_id}]  # prompt_results shows the newest run; prompt_results_all keeps both


def test_expression_aggregate_differs_but_agrees_in_direction(indexed):
    sets = resolve_prompts(indexed, ["G2M"])
    by_score = run_prompt(indexed, sets, method="softknn", record=False).results["score"].to_numpy()
    by_profile = run_prompt(indexed, sets, aggregate="expression", method="softknn", record=False).results["score"]
    by_profile = by_profile.to_numpy()
    assert not np.allclose(by_score, by_profile)
    assert np.corrcoef(by_score, by_profile)[0, 1] > 0.8


def test_tile_level_scores_every_tile_of_the_chosen_slides(indexed):
    sample = indexed.sql("select sample_id from samples where has_slide order by 1 limit 1").to_pylist()[0]["sample_id"]
    run = run_prompt(indexed, resolve_prompts(indexed, ["G2M"]), level="tile", samples=[sample], record=False)
    n_tiles = indexed.sql(f"select count(*) n from tiles where sample_id = '{sample}'").to_pylist()[0]["n"]
    assert run.results.num_rows == n_tiles
    assert sorted(run.results["tile_index"].to_pylist()) == list(range(n_tiles))


def test_filters_and_bad_input(indexed):
    sets = resolve_prompts(indexed, ["G2M"])
    brca = run_prompt(indexed, sets, where="cancer_type = 'BRCA'", record=False)
    assert set(brca.results["cancer_type"].to_pylist()) == {"BRCA"}
    with pytest.raises(InputError, match="no slide for sample.*NOPE"):
        run_prompt(indexed, sets, samples=["NOPE"], record=False)
    with pytest.raises(InputError, match="no slides in cohort 'x'"):
        run_prompt(indexed, sets, cohort="x", record=False)
    with pytest.raises(InputError, match="sample filter"):
        run_prompt(indexed, sets, where="no_such_column = 1", record=False)
    too_small = resolve_prompts(indexed, ["MKI67,TOP2A,NOTAGENE1,NOTAGENE2,NOTAGENE3"])
    runs_before = indexed.sql("select count(*) n from prompt_runs").to_pylist()
    with pytest.raises(GeneSetTooSmall, match="only 2 of its 5 genes.*missing: NOTAGENE1"):
        run_prompt(indexed, too_small)
    assert indexed.sql("select count(*) n from prompt_runs").to_pylist() == runs_before


def test_cli_prompt_table_and_files(fresh, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["prompt", "--genes", "HALLMARK_G2M", "--store", str(fresh.root), "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert f"{G2M}: 199/200 genes in the library (missing: PTTG3P)" in result.output
    assert "effective K" in result.output
    assert "more; --out FILE" in result.output
    out = tmp_path / "scores.csv"
    result = runner.invoke(main, ["prompt", "--genes", "G2M", "--genes", "CD8A,CD8B,GZMB,PRF1,GZMA,NKG7",
                                  "--format", "csv", "--out", str(out), "--store", str(fresh.root)])
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(out)
    assert set(frame["gene_set"]) == {G2M, "genes:CD8A,CD8B,GZMB+3"}
    result = runner.invoke(main, ["prompt", "--genes", "ESTROGEN", "--store", str(fresh.root)])
    assert result.exit_code == 1 and "matches 2 gene sets" in result.output


@pytest.mark.parametrize("rule", [NeighbourRule(), NeighbourRule(())], ids=["match type", "match none"])
def test_neighbours_saved_with_the_index_equal_a_fresh_search(indexed, rule):
    slides = [r[0] for r in indexed.query("slide_samples")][:200]
    index, library, keys, queries, patients, _ = slide_queries(indexed, slides)
    assert index.stored_neighbours() is not None and index._index is None
    samples = [s for s, _ in keys]
    saved_rows, saved_sims, _ = library_neighbours(indexed, index, library, queries, samples, 32, rule, saved=True)
    assert index._index is None and index._vectors is None  # answered without reading the FAISS index
    rows, sims, _ = library_neighbours(indexed, index, library, queries, samples, 32, rule)
    np.testing.assert_allclose(saved_sims, sims, atol=1e-5)
    # two candidates whose similarities tie to float precision may trade places, nothing else may differ
    for q, j in zip(*np.nonzero(saved_rows != rows)):
        tied = np.flatnonzero(np.abs(saved_sims[q] - saved_sims[q, j]) < 1e-6)
        assert len(tied) > 1 and set(saved_rows[q, tied]) == set(rows[q, tied]), (q, j)


def test_neighbours_share_the_querys_cancer_type_by_default(indexed):
    metadata = {r.sample_id: r for r in indexed.query("sample_metadata")}
    slides = [r[0] for r in indexed.query("slide_samples")][:200]
    index, library, keys, queries, patients, _ = slide_queries(indexed, slides)
    samples = [s for s, _ in keys]
    rows, _, notes = library_neighbours(indexed, index, library, queries, samples, 32)
    types = np.array([[metadata[library.sample_ids[r]].cancer_type for r in row] for row in rows])
    assert (types == np.array([metadata[s].cancer_type for s in samples])[:, None]).all() and notes == []
    rows, _, _ = library_neighbours(indexed, index, library, queries, samples, 32, NeighbourRule(()))
    mixed = np.array([[metadata[library.sample_ids[r]].cancer_type for r in row] for row in rows])
    assert (mixed != np.array([metadata[s].cancer_type for s in samples])[:, None]).any()


def test_neighbours_where_restricts_the_library(indexed):
    metadata = {r.sample_id: r for r in indexed.query("sample_metadata")}
    slides = [r[0] for r in indexed.query("slide_samples")][:50]
    index, library, keys, queries, patients, _ = slide_queries(indexed, slides)
    rule = NeighbourRule((), "cohort = 'demo_reference'")
    rows, _, _ = library_neighbours(indexed, index, library, queries, [s for s, _ in keys], 16, rule)
    assert {metadata[library.sample_ids[r]].cohort for r in rows.reshape(-1)} == {"demo_reference"}
    with pytest.raises(InputError, match="keeps none"):
        library_neighbours(indexed, index, library, queries, [s for s, _ in keys], 16, NeighbourRule((), "false"))
    with pytest.raises(InputError, match="no sample has a value for match column"):
        library_neighbours(indexed, index, library, queries, [s for s, _ in keys], 16, NeighbourRule(("no_such_field",)))


def test_slides_ingested_after_the_index_are_scored_at_once(fresh, tmp_path):
    """A new slide needs no new index: the prompt projects it through the index's model, as a rebuild would."""
    from hquery.retrieval import build_index
    from tests.conftest import write_tiles

    write_tiles(tmp_path / "slides" / "LATE1", grid=2, size=64)
    pl.DataFrame([{"sample_id": "LATE1", "patient_id": "LATEP", "cancer_type": "BRCA",
                   "slide_path": "slides/LATE1"}]).write_csv(tmp_path / "late.csv")
    ingest_cohort(fresh, tmp_path / "late.csv", name="late")
    sets = resolve_prompts(fresh, ["G2M"])
    for level in ("slide", "tile"):
        run = run_prompt(fresh, sets, method="softknn", level=level, record=False)
        assert "LATE1" in run.results["sample_id"].to_pylist(), level
        assert any("LATE1) were ingested after the index was built; projected now" in n for n in run.notes)
    now = pl.from_arrow(run_prompt(fresh, sets, method="softknn", samples=["LATE1"], record=False).results)
    build_index(fresh)
    rebuilt = run_prompt(fresh, sets, method="softknn", samples=["LATE1"], record=False)
    assert not any("ingested after" in n for n in rebuilt.notes)
    np.testing.assert_allclose(now["score"].to_numpy(), pl.from_arrow(rebuilt.results)["score"].to_numpy(),
                               rtol=1e-5)
