"""Which library profiles a query may take as neighbours: the metadata rule, and search within a group.

A slide's nearest RNA profiles in the aligned space may come from any tumour
type, although the manifest already says which type the slide is. A
:class:`NeighbourRule` keeps each query to library profiles that share its
values in chosen manifest columns (``cancer_type`` by default), and optionally
to the profiles an SQL predicate over ``samples`` selects. A query whose group
holds fewer than ``k`` usable profiles, or that has no value in a match column,
draws from the whole (filtered) library instead, and the plan says so in a note.

The search runs inside each group (:func:`search_groups`): a rare type still
gets ``k`` neighbours of its own type, which filtering a fixed top-k afterwards
cannot promise.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np

from hquery.errors import InputError, NotReadyError
from hquery.library import Library
from hquery.retrieval.index import RNAIndex
from hquery.retrieval.softknn import most_profiles_per_patient, skip_own_patient
from hquery.store import Store, StoreError

DEFAULT_MATCH = ("cancer_type",)
SAMPLE_COLUMNS = ("cancer_type", "cohort")
"""Match columns read from ``samples`` itself; any other name is a key of the clinical JSON."""


@dataclasses.dataclass(frozen=True)
class NeighbourRule:
    """Match each query to library profiles with the same values in ``match``; ``where`` filters the library.

    Examples
    --------
    >>> NeighbourRule().describe()
    'match cancer_type'
    >>> NeighbourRule.parse("none", "cohort = 'TCGA'").describe()
    "match none; library where cohort = 'TCGA'"
    """

    match: tuple[str, ...] = DEFAULT_MATCH
    where: str | None = None

    @classmethod
    def parse(cls, match: str | None = None, where: str | None = None) -> NeighbourRule:
        """From the command line's ``--match COL[,COL]|none`` and ``--neighbours-where SQL``."""
        if match is None:
            columns = DEFAULT_MATCH
        elif match.strip().lower() == "none":
            columns = ()
        else:
            columns = tuple(c.strip() for c in match.split(",") if c.strip())
            if not columns:
                raise InputError(f"--match {match!r} names no column; give COL[,COL] or none")
        return cls(columns, where or None)

    def describe(self) -> str:
        text = f"match {','.join(self.match) or 'none'}"
        return f"{text}; library where {self.where}" if self.where else text

    def as_json(self) -> dict:
        return {"match": list(self.match), "where": self.where}


@dataclasses.dataclass(frozen=True)
class SampleMetadata:
    """Each stored sample's patient and match-column values, read once from the catalog."""

    patient: dict[str, str]
    values: dict[str, tuple]
    """``sample_id -> value per match column`` (``None`` where a sample has none)."""
    columns: tuple[str, ...]

    @classmethod
    def load(cls, store: Store, columns: Sequence[str]) -> SampleMetadata:
        rows = store.query("sample_metadata")
        clinical = {r.sample_id: json.loads(r.clinical) if r.clinical else {} for r in rows} \
            if any(c not in SAMPLE_COLUMNS for c in columns) else {}
        unknown = [c for c in columns if c not in SAMPLE_COLUMNS and not any(c in v for v in clinical.values())]
        if unknown:
            keys = sorted({k for v in clinical.values() for k in v})
            raise InputError(f"no sample has a value for match column(s) {', '.join(unknown)}; columns: "
                             f"{', '.join(SAMPLE_COLUMNS + tuple(keys))}")

        def value(row, column):
            found = getattr(row, column) if column in SAMPLE_COLUMNS else clinical[row.sample_id].get(column)
            return None if found is None or found == "" else str(found)

        return cls({r.sample_id: r.patient_id for r in rows},
                   {r.sample_id: tuple(value(r, c) for c in columns) for r in rows}, tuple(columns))


@dataclasses.dataclass
class NeighbourPlan:
    """Which candidates each query searches: ``group_of[q]`` indexes :attr:`groups` (candidate positions)."""

    groups: list[np.ndarray]
    group_of: np.ndarray
    notes: list[str]

    def matched(self) -> np.ndarray:
        """Per query: whether its neighbours come from its own group (not the fallback)."""
        return self.group_of != 0


def plan_neighbours(query_values: Sequence[tuple | None], candidate_values: Sequence[tuple],
                    candidate_patients: np.ndarray, k: int, *, columns: Sequence[str] = DEFAULT_MATCH,
                    allowed: np.ndarray | None = None) -> NeighbourPlan:
    """Group the queries by their match values and give each group the candidates it may search.

    Parameters
    ----------
    query_values, candidate_values
        Each query's and each candidate's value per match column (``None`` where missing).
    candidate_patients
        The patient of each candidate: a group is usable only if it keeps ``k``
        candidates after one patient's profiles are skipped.
    allowed
        Candidates the rule's ``where`` keeps (all by default).

    Returns
    -------
    NeighbourPlan whose group 0 is the fallback: every allowed candidate.

    Examples
    --------
    >>> plan = plan_neighbours([("A",), ("B",), (None,)], [("A",), ("A",), ("B",)], np.array(["p", "q", "r"]), 1)
    >>> [g.tolist() for g in plan.groups], plan.group_of.tolist()
    ([[0, 1, 2], [0, 1]], [1, 0, 0])
    >>> for note in plan.notes:
    ...     print(note)
    1 query (B) drew from the whole library: fewer than k=1 profiles of their cancer_type there
    1 query had no cancer_type and drew from the whole library
    """
    n = len(candidate_values)
    allowed = np.ones(n, bool) if allowed is None else np.asarray(allowed, bool)
    everyone = np.flatnonzero(allowed)
    groups, group_of, notes = [everyone], np.zeros(len(query_values), np.int64), []
    if not columns:
        return NeighbourPlan(groups, group_of, notes)
    members: dict[tuple, list[int]] = {}
    for i in everyone:
        if None not in candidate_values[i]:
            members.setdefault(candidate_values[i], []).append(int(i))
    usable, too_few, missing = {}, {}, 0
    for q, value in enumerate(query_values):
        if value is None or None in value:
            missing += 1
            continue
        if value not in usable:
            rows = np.array(members.get(value, []), np.int64)
            enough = len(rows) - most_profiles_per_patient(candidate_patients[rows]) >= k
            usable[value] = len(groups) if enough else 0
            if enough:
                groups.append(rows)
        group_of[q] = usable[value]
        if usable[value] == 0:
            too_few[value] = too_few.get(value, 0) + 1
    label = ",".join(columns)
    if too_few:
        shown = ", ".join("/".join(v) for v in sorted(too_few)[:5]) + (" ..." if len(too_few) > 5 else "")
        count = sum(too_few.values())
        notes.append(f"{count} quer{'y' if count == 1 else 'ies'} ({shown}) drew from the whole library: fewer "
                     f"than k={k} profiles of their {label} there")
    if missing:
        notes.append(f"{missing} quer{'y' if missing == 1 else 'ies'} had no {label} and drew from the whole library")
    return NeighbourPlan(groups, group_of, notes)


def nearest_within(vectors: np.ndarray, rows: np.ndarray, queries: np.ndarray, n: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``n`` of ``vectors[rows]`` by inner product: (positions into ``vectors``, similarities)."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors[rows], dtype=np.float32))
    sims, local = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(n, len(rows)))
    return rows[local], sims


def search_groups(plan: NeighbourPlan, query_patients: np.ndarray, candidate_patients: np.ndarray, k: int,
                  search) -> tuple[np.ndarray, np.ndarray]:
    """Each query's top-``k`` candidates (positions, similarities) within its group, own patient skipped.

    ``search(group, queries_at, n)`` returns the top ``n`` (positions, similarities)
    of those queries among the group's candidates, e.g. :func:`nearest_within` on
    the candidates' vectors: each group searched exactly by its own small FAISS
    index, which at a 100k library is about twice as fast as one unfiltered
    search and faster than FAISS ID selectors (``benchmarks/filtered_search.py``).

    Examples
    --------
    >>> vectors = np.eye(4, dtype=np.float32)
    >>> plan = plan_neighbours([("A",), ("B",)], [("A",), ("A",), ("B",), ("B",)], np.array(["p", "q", "r", "s"]), 1)
    >>> search = lambda g, at, n: nearest_within(vectors, plan.groups[g], vectors[at], n)
    >>> search_groups(plan, np.array(["p", "r"]), np.array(["p", "q", "r", "s"]), 1, search)[0].tolist()
    [[1], [3]]
    """
    positions = np.zeros((len(query_patients), k), np.int64)
    similarities = np.zeros((len(query_patients), k), np.float32)
    for g, rows in enumerate(plan.groups):
        at = np.flatnonzero(plan.group_of == g)
        if not len(at):
            continue
        fetch = min(k + most_profiles_per_patient(candidate_patients[rows]), len(rows))
        found, sims = search(g, at, fetch)
        found, sims = skip_own_patient(found, sims, candidate_patients, query_patients[at], k)
        positions[at], similarities[at] = found, sims
    return positions, similarities


def library_neighbours(store: Store, index: RNAIndex, library: Library, queries: np.ndarray,
                       query_samples: list[str], k: int, rule: NeighbourRule = NeighbourRule(), saved: bool = False
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Library rows and similarities ``[queries, k]`` of each query's top-k under ``rule``, other patients only.

    With ``saved`` (slide-level queries), neighbours saved with the index answer
    wherever they cover the request, and no search runs. Returns the notes of the
    :class:`~hquery.retrieval.neighbours.NeighbourPlan` too.
    """
    metadata = SampleMetadata.load(store, rule.match)
    missing = [s for s in index.ids if s not in library.row]
    if missing:
        raise NotReadyError(f"index profiles {', '.join(missing[:5])} are not in the expression table; "
                         "build the index again", needs="index")
    ids = index.ids.tolist()
    index_patients = np.array([metadata.patient[s] for s in ids])
    allowed = None
    if rule.where:
        keep = set(store.samples_where(rule.where, library=True))
        allowed = np.array([s in keep for s in ids], bool)
        if not allowed.any():
            raise InputError(f"--neighbours-where {rule.where!r} keeps none of the index's {len(ids)} profiles")
    searchable = np.flatnonzero(allowed) if allowed is not None else np.arange(len(ids))
    k = min(k, len(searchable) - most_profiles_per_patient(index_patients[searchable]))
    if k < 1:
        raise StoreError("the library has no profiles from other patients to retrieve")
    plan = plan_neighbours([metadata.values.get(s) for s in query_samples], [metadata.values[s] for s in ids],
                           index_patients, k, columns=rule.match, allowed=allowed)
    stored = index.stored_neighbours() if saved and rule.where is None else None
    query_rows = [stored.row.get(s) for s in query_samples] if stored is not None else []

    def search(group, at, n):
        if stored is not None and all(query_rows[i] is not None for i in at):
            rows = [query_rows[i] for i in at]
            if group == 0 and stored.positions.shape[1] >= n:
                return stored.positions[rows, :n].astype(np.int64), stored.similarities[rows, :n]
            if group > 0 and stored.matched_on == rule.match and (stored.matched_positions[rows, :n] >= 0).all():
                return stored.matched_positions[rows, :n].astype(np.int64), stored.matched_similarities[rows, :n]
        if group == 0 and allowed is None:
            return index.search_positions(queries[at], n)
        return nearest_within(index.vectors(), plan.groups[group], queries[at], n)

    query_patients = np.array([metadata.patient[s] for s in query_samples])
    positions, sims = search_groups(plan, query_patients, index_patients, k, search)
    library_row = np.array([library.row[s] for s in ids], dtype=np.int64)
    return library_row[positions], sims, plan.notes
