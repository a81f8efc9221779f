"""The RNA library a prompt is answered from: every stored expression profile and its gene-set scores.

Scores are raw ssGSEA ES, cached in the catalog under (gene-set members hash,
committed version of the Lance ``expression`` table). A lookup asks for the
current version, so any ingest that adds profiles turns the cache into misses,
never into stale hits; the rows of older versions are dropped when new ones land.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from hquery.errors import GeneSetTooSmall
from hquery.genesets import GeneSet
from hquery.names import EXPRESSION
from hquery.parallel import RayOptions, ray_map
from hquery.scoring import GeneSetMatch, match_gene_sets, ssgsea
from hquery.store import Store, StoreError, vectors

TABLE = EXPRESSION
BATCH_ROWS = 50_000
"""Profiles scored at a time when the library is read from Lance: memory follows this, not the library's size."""


def match_with_minimum(universe: Sequence[str], gene_sets: Sequence[GeneSet], min_genes: int, whose: str,
                       hint: str = "", needs: str | None = None) -> list[GeneSetMatch]:
    """Each set's members in ``universe``; :class:`GeneSetTooSmall`, naming the set, if one has under ``min_genes``."""
    matches = match_gene_sets(universe, {gs.name: gs.members for gs in gene_sets})
    for m in matches:
        if m.n_found < max(min_genes, 1):  # a set with no gene found scores nothing, whatever the minimum
            total = m.n_found + len(m.missing)
            shown = ", ".join(m.missing[:10]) + (" ..." if len(m.missing) > 10 else "")
            raise GeneSetTooSmall(
                f"gene set {m.name}: only {m.n_found} of its {total} genes are in {whose} {len(universe)}-gene "
                f"universe, fewer than the minimum of {max(min_genes, 1)} (missing: {shown}){hint}", needs=needs)
    return matches


class Library:
    """The committed expression table: sample ids, gene universe, profiles on demand, cached scores."""

    def __init__(self, store: Store):
        table = store.lance_tables().get(TABLE)
        if table is None:
            raise StoreError("the store has no expression profiles yet; ingest RNA-seq first")
        self.store = store
        self.version = table.version
        self.universe = [row.symbol for row in store.query("gene_universe")]
        self.sample_ids = store.dataset(TABLE).to_table(columns=["sample_id"])["sample_id"].to_pylist()
        self.row = {sid: i for i, sid in enumerate(self.sample_ids)}
        self._expression: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.sample_ids)

    def expression(self) -> np.ndarray:
        """``samples × genes`` log1p-normalised profiles in the order of :attr:`sample_ids`."""
        if self._expression is None:
            self._expression = vectors(self.store.dataset(TABLE).to_table(columns=["values"])["values"])
        return self._expression

    def match(self, gene_sets: Sequence[GeneSet], min_genes: int = 5) -> list[GeneSetMatch]:
        """Each set's members in the universe; raise :class:`GeneSetTooSmall` if one has under ``min_genes``."""
        return match_with_minimum(self.universe, gene_sets, min_genes, "the library's")

    def scores(self, gene_sets: Sequence[GeneSet], matches: Sequence[GeneSetMatch]) -> tuple[np.ndarray, int]:
        """ssGSEA ES ``[library samples, sets]``, from the cache where it can; returns (scores, sets computed)."""
        scores, todo = self.cached_scores(gene_sets)
        return self.fill_scores(scores, todo, gene_sets, matches), len(todo)

    def cached_scores(self, gene_sets: Sequence[GeneSet]) -> tuple[np.ndarray, list[int]]:
        """Scores found in the cache (read-only), and the columns still to compute."""
        hashes = [gs.members_hash for gs in gene_sets]
        cached: dict[str, dict[str, float]] = {}
        for row in self.store.query("library_scores", [self.version, hashes]):
            cached.setdefault(row.members_hash, {})[row.sample_id] = row.es
        out = np.full((len(self), len(gene_sets)), np.nan)
        todo = []
        for j, h in enumerate(hashes):
            by_sample = cached.get(h)
            if by_sample is not None and len(by_sample) == len(self):
                out[:, j] = [by_sample[s] for s in self.sample_ids]
            else:
                todo.append(j)
        return out, todo

    def fill_scores(self, scores: np.ndarray, todo: list[int], gene_sets: Sequence[GeneSet],
                    matches: Sequence[GeneSetMatch]) -> np.ndarray:
        """Compute the ``todo`` columns by ssGSEA and cache them."""
        if todo:
            positions = [matches[j].positions for j in todo]
            scores[:, todo] = (ssgsea(self._expression, positions) if self._expression is not None
                               else score_library(self.store, positions, version=self.version))
            self._write_cache([gene_sets[j].members_hash for j in todo], scores[:, todo])
        return scores

    def _write_cache(self, hashes: list[str], scores: np.ndarray) -> None:
        n = len(self)
        rows = pa.table({
            "members_hash": pa.array(np.repeat(hashes, n).tolist(), pa.string()),
            "library_version": pa.array(np.full(n * len(hashes), self.version), pa.int64()),
            "sample_id": pa.array(self.sample_ids * len(hashes), pa.string()),
            "es": pa.array(scores.T.reshape(-1), pa.float64()),
        })
        with self.store.transaction() as txn:
            txn.execute("drop_stale_library_scores", [self.version])
            txn.insert("library_scores", rows)


def score_library(store: Store, gene_sets: Sequence[np.ndarray], *, version: int | None = None,
                  batch_rows: int = BATCH_ROWS, engine: RayOptions | None = None) -> np.ndarray:
    """ssGSEA ES of every stored profile, read from Lance ``batch_rows`` at a time.

    A profile's ES depends on that profile alone, so batches are scored
    independently: in this process one after another (memory bounded by a batch),
    or with ``engine`` as Ray tasks, each reading its own rows of the same
    committed version.

    Parameters
    ----------
    gene_sets
        Each set's column positions in the gene universe (:func:`~hquery.scoring.match_gene_sets`).
    version
        The ``expression`` table's version (default: the committed one).

    Returns
    -------
    ``profiles × sets`` float64 ES, in the table's row order.
    """
    dataset = store.dataset(TABLE, version)
    if dataset is None:
        raise StoreError("the store has no expression profiles yet; ingest RNA-seq first")
    if engine is None:
        blocks = [ssgsea(vectors(batch["values"]), gene_sets)
                  for batch in dataset.to_batches(columns=["values"], batch_size=batch_rows)]
    else:
        n = dataset.count_rows()
        ranges = [(store.root.absolute(), dataset.version, start, min(start + batch_rows, n), gene_sets)
                  for start in range(0, n, batch_rows)]
        blocks = list(ray_map(_score_rows, ranges, engine))
    return np.concatenate(blocks) if blocks else np.empty((0, len(gene_sets)))


def _score_rows(root, version: int, start: int, stop: int, gene_sets: Sequence[np.ndarray]) -> np.ndarray:
    """One Ray task of :func:`score_library`: rows ``start:stop`` of the expression table at ``version``."""
    rows = Store(root).dataset(TABLE, version).to_table(columns=["values"], offset=start, limit=stop - start)
    return ssgsea(vectors(rows["values"]), gene_sets, threads=1)
