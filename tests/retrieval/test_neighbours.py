import numpy as np
import pytest

from hquery.errors import InputError
from hquery.retrieval.index import build_faiss_index
from hquery.retrieval.neighbours import NeighbourRule, nearest_within, plan_neighbours, search_groups


def hand_made_library(seed=0):
    """1,000 common-type profiles, 12 of a rare type, each its own patient except one rare patient with 3."""
    rng = np.random.default_rng(seed)
    types = np.array(["COMMON"] * 1000 + ["RARE"] * 12)
    vectors = rng.normal(size=(len(types), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    patients = np.array([f"P{i}" for i in range(len(types))], dtype="<U16")
    patients[1000:1003] = "RARE-P0"
    return types, vectors, patients


def search_with(vectors, plan, queries):
    return lambda g, at, n: nearest_within(vectors, plan.groups[g], queries[at], n)


def test_a_rare_type_still_gets_k_neighbours_of_its_own_type():
    types, vectors, patients = hand_made_library()
    queries = vectors[:5] + 0.01  # closest to common profiles: a global top-k holds no rare one
    k = 8
    plan = plan_neighbours([("RARE",)] * 5, [(t,) for t in types], patients, k)
    positions, sims = search_groups(plan, np.array(["RARE-P0"] * 5), patients, k, search_with(vectors, plan, queries))
    assert (types[positions] == "RARE").all() and positions.shape == (5, k) and plan.notes == []
    assert not (patients[positions] == "RARE-P0").any()  # own patient skipped, still k left
    exact = np.argsort(-(queries @ vectors[1003:].T), axis=1)[:, :k] + 1003
    np.testing.assert_array_equal(positions, exact)
    assert np.all(np.diff(sims, axis=1) <= 1e-6)
    # post-filtering an unfiltered top-64 would have starved them
    _, top = build_faiss_index(vectors).search(queries, 64)
    assert (types[top] == "RARE").sum() < 5 * k


def test_a_type_absent_or_too_small_falls_back_to_the_whole_library_with_a_note():
    types, vectors, patients = hand_made_library()
    queries = vectors[:3]
    plan = plan_neighbours([("ABSENT",), ("RARE",), None], [(t,) for t in types], patients, 10)
    assert plan.group_of.tolist() == [0, 0, 0] and not plan.matched().any()
    assert "2 queries (ABSENT, RARE) drew from the whole library: fewer than k=10" in plan.notes[0]
    assert plan.notes[1] == "1 query had no cancer_type and drew from the whole library"
    positions, _ = search_groups(plan, np.array(["Q1", "Q2", "Q3"]), patients, 10, search_with(vectors, plan, queries))
    assert (types[positions] == "COMMON").any()


def test_match_none_and_where_restrict_as_told():
    types, vectors, patients = hand_made_library()
    allowed = np.arange(len(types)) % 2 == 0
    plan = plan_neighbours([("RARE",)], [(t,) for t in types], patients, 4, columns=(), allowed=allowed)
    assert len(plan.groups) == 1 and plan.groups[0].tolist() == np.flatnonzero(allowed).tolist()
    plan = plan_neighbours([("RARE",)], [(t,) for t in types], patients, 4, allowed=allowed)
    assert plan.matched().all() and (allowed[plan.groups[1]]).all() and (types[plan.groups[1]] == "RARE").all()


def test_rule_parsing():
    assert NeighbourRule.parse().match == ("cancer_type",)
    assert NeighbourRule.parse("none").match == ()
    assert NeighbourRule.parse("cancer_type, stage").match == ("cancer_type", "stage")
    with pytest.raises(InputError, match="names no column"):
        NeighbourRule.parse(" , ")
