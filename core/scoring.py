"""Single-sample GSEA (Barbie et al., Nature 2009), vectorised across samples and gene sets.

The definition follows ``gseapy.ssgsea`` with its defaults (``sample_norm_method="rank"``,
``correl_norm_type="rank"``, weight 0.25), so the two agree on the raw enrichment
score (ES). For one sample with ``n`` genes, genes are ordered by expression,
highest first; ties keep gseapy's order (a stable ascending sort, reversed). A
gene's weight is ``(10000 · rank / n) ** weight`` with ``rank`` its average
(1-based, ascending) rank. The ES is the sum over positions of the random walk
``P_hit - P_miss``, which has the closed form

    ES = Σ_hit w_g · a_g / Σ_hit w_g  −  (n(n+1)/2 − Σ_hit a_g) / (n − k)

with ``a_g`` the gene's 1-based position in the stable ascending order and ``k``
the number of set genes in the universe. Both sums over hits are matrix
products, so all samples and sets are scored by ranking each sample once.

Only the raw ES is returned: gseapy's NES divides by the range of every ES in
the batch, so it changes with whatever else was scored alongside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from hquery.parallel import available_cpus

WEIGHT = 0.25


@dataclasses.dataclass(frozen=True)
class GeneSetMatch:
    """Which of a gene set's members are in the gene universe."""

    name: str
    positions: np.ndarray
    """Column positions in the universe of the members found."""
    missing: tuple[str, ...]

    @property
    def n_found(self) -> int:
        return len(self.positions)


def match_gene_sets(universe: Sequence[str], gene_sets: Mapping[str, Sequence[str]]) -> list[GeneSetMatch]:
    """Positions of each set's members in ``universe`` (duplicates counted once), and the members missing."""
    where = {symbol: i for i, symbol in enumerate(universe)}
    out = []
    for name, members in gene_sets.items():
        unique = list(dict.fromkeys(members))
        found = np.array(sorted({where[g] for g in unique if g in where}), dtype=np.int64)
        out.append(GeneSetMatch(name, found, tuple(g for g in unique if g not in where)))
    return out


def ssgsea(expression: np.ndarray, gene_sets: Sequence[np.ndarray], *, weight: float = WEIGHT,
           threads: int | None = None) -> np.ndarray:
    """Raw ssGSEA enrichment scores.

    Parameters
    ----------
    expression
        ``samples × genes``; any per-sample monotone transform (counts, CPM, log)
        gives the same scores. NaN is refused (gseapy silently reads it as 0).
    gene_sets
        For each set, the column positions of its members (at least one, fewer than all).
    weight
        The exponent on the rank weights (gseapy's ``weight``).
    threads
        Blocks of samples scored side by side (default: the CPUs available).

    Returns
    -------
    ``samples × sets`` float64 array of ES.
    """
    from concurrent.futures import ThreadPoolExecutor

    expression = np.asarray(expression)
    n_samples, n = expression.shape
    if np.isnan(expression).any():
        rows = np.flatnonzero(np.isnan(expression).any(axis=1))
        raise ValueError(f"expression has NaN in {len(rows)} samples (first: row {rows[0]}); impute or drop them first")
    k = np.array([len(p) for p in gene_sets], dtype=np.float64)
    if np.any(k == 0) or np.any(k >= n):
        bad = [i for i, size in enumerate(k) if size == 0 or size >= n]
        raise ValueError(f"gene sets {bad} have {k[bad[0]]:.0f} of {n} genes; a set needs at least one and fewer than all")
    union = np.unique(np.concatenate(gene_sets))
    membership = np.zeros((len(union), len(gene_sets)))
    for j, positions in enumerate(gene_sets):
        membership[np.searchsorted(union, positions), j] = 1.0

    def block(rows: slice) -> np.ndarray:
        position, average = _ranks(expression[rows])
        position, average = position[:, union].astype(np.float64), average[:, union]
        w = _rank_weights(average * (10000.0 / n), weight)
        return (w * position) @ membership / (w @ membership) - (n * (n + 1) / 2 - position @ membership) / (n - k)

    rows_per_block = max(1, 4_000_000 // n)
    blocks = [slice(i, i + rows_per_block) for i in range(0, n_samples, rows_per_block)]
    workers = min(len(blocks), threads or available_cpus())
    if workers <= 1:
        return np.concatenate([block(b) for b in blocks]) if blocks else np.empty((0, len(gene_sets)))
    with ThreadPoolExecutor(workers) as pool:  # numpy's sort, ufuncs and indexing release the GIL
        return np.concatenate(list(pool.map(block, blocks)))


def _rank_weights(scaled_rank: np.ndarray, weight: float) -> np.ndarray:
    if weight == 0.25:
        return np.sqrt(np.sqrt(scaled_rank))
    return np.abs(scaled_rank) ** weight


def _ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: each gene's 1-based position in a stable ascending sort, and its average rank.

    One sort of 64-bit keys (the float32 value's order-preserving bits, then the
    gene index) gives both: the index breaks ties by gene order, which is the
    order gseapy's stable sort leaves them in. Values that float32 cannot hold
    exactly are ranked by scipy instead, so distinct values never become ties.
    """
    rows, n = x.shape
    x32 = np.ascontiguousarray(x, dtype=np.float32) + np.float32(0.0)  # -0.0 -> +0.0
    if x.dtype != np.float32 and not np.array_equal(x32, x):
        from scipy.stats import rankdata

        return rankdata(x, method="ordinal", axis=1), rankdata(x, method="average", axis=1)
    bits = x32.view(np.uint32)
    if x32.size and x32.min() < 0:
        bits = np.where(bits & np.uint32(1 << 31), ~bits, bits | np.uint32(1 << 31))
    shift = max(1, int(n - 1).bit_length())
    keys = bits.astype(np.uint64)
    keys <<= np.uint64(shift)
    keys |= np.arange(n, dtype=np.uint64)
    keys.sort(axis=1)
    flat = keys.reshape(-1)
    base = np.repeat(np.arange(rows, dtype=np.int64) * n, n)
    where = (flat & np.uint64((1 << shift) - 1)).astype(np.int64)
    where += base
    flat >>= np.uint64(shift)
    starts_block = np.empty(rows * n, dtype=bool)
    starts_block[0] = True
    np.not_equal(flat[1:], flat[:-1], out=starts_block[1:])
    starts_block[::n] = True
    starts = np.flatnonzero(starts_block)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 1
    ends[-1] = rows * n - 1
    average_sorted = ((starts + ends) / 2.0 + 1.0)[np.cumsum(starts_block) - 1] - base
    position = np.empty(rows * n, dtype=np.int32)
    position[where] = np.tile(np.arange(1, n + 1, dtype=np.int32), rows)
    average = np.empty(rows * n)
    average[where] = average_sorted
    return position.reshape(rows, n), average.reshape(rows, n)


def score_gene_sets(expression: np.ndarray, universe: Sequence[str], gene_sets: Mapping[str, Sequence[str]], *,
                    weight: float = WEIGHT, min_genes: int = 1) -> tuple[np.ndarray, list[GeneSetMatch]]:
    """ssGSEA ES of named gene sets (members as symbols) for every row of ``expression``.

    Members outside ``universe`` are dropped; a set with fewer than ``min_genes``
    members left raises ``ValueError`` naming it and its missing genes.

    Returns
    -------
    ``(scores [samples, sets], matches)`` with the sets in the order given.
    """
    matches = match_gene_sets(universe, gene_sets)
    for m in matches:
        if m.n_found < min_genes:
            raise ValueError(
                f"gene set {m.name}: {m.n_found} of {m.n_found + len(m.missing)} genes are in the expression "
                f"universe, fewer than the minimum {min_genes} (missing: {', '.join(m.missing[:10])}"
                f"{' ...' if len(m.missing) > 10 else ''})"
            )
    return ssgsea(expression, [m.positions for m in matches], weight=weight), matches
