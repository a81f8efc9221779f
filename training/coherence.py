"""Gene Pathway Coherence (GPC), the HistoPrism paper's pathway-level benchmark, and per-gene Pearson r.

For each sample (spot level: correlation across the sample's tiles) or each
group of samples (bulk level: across the samples, e.g. of one cancer type),
every gene gets the Pearson r between predicted and measured expression; a
pathway's coherence is the mean r over its member genes in the panel. Genes
that do not vary (in either the prediction or the measurement) have no r and
are left out of the mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hquery.stats import finite_mean, pearson_per_column


def gene_pathway_coherence(predicted: np.ndarray, measured: np.ndarray, groups: Sequence,
                           pathways: Mapping[str, np.ndarray]) -> dict[object, dict[str, float]]:
    """GPC of each pathway within each group.

    Parameters
    ----------
    predicted, measured
        ``[rows, genes]`` expression of the same rows and gene panel.
    groups
        Each row's group: its sample for spot-level GPC (rows are tiles), or its
        cancer type for bulk GPC (rows are samples). Groups with fewer than three
        rows are skipped.
    pathways
        Pathway name -> column positions of its members in the panel.

    Returns
    -------
    ``{group: {pathway: mean r over the pathway's genes}}`` (NaN when none of its genes has an r).
    """
    groups = np.asarray(groups)
    out: dict[object, dict[str, float]] = {}
    for group in dict.fromkeys(groups.tolist()):
        rows = groups == group
        if rows.sum() < 3:
            continue
        r = pearson_per_column(predicted[rows], measured[rows])
        out[group] = {name: finite_mean(r[np.asarray(positions, dtype=np.int64)]) for name, positions in pathways.items()}
    return out


def mean_by(values: Mapping[object, Mapping[str, float]], key: Mapping[object, str]) -> dict[str, dict[str, float]]:
    """Average per-group GPC over the groups that share ``key[group]`` (e.g. samples -> their cancer type)."""
    collected: dict[str, dict[str, list[float]]] = {}
    for group, by_pathway in values.items():
        for pathway, value in by_pathway.items():
            collected.setdefault(key[group], {}).setdefault(pathway, []).append(value)
    return {k: {p: finite_mean(np.array(v)) for p, v in by.items()} for k, by in collected.items()}


def mean_over_pathways(table: Mapping[object, Mapping[str, float]]) -> dict[object, float]:
    """``{group: {pathway: gpc}}`` -> ``{group: mean GPC over pathways}``, plus ``all`` (the mean over groups)."""
    by_group = {g: finite_mean(np.array(list(v.values()), dtype=float)) for g, v in sorted(table.items())}
    by_group["all"] = finite_mean(np.array(list(by_group.values()), dtype=float))
    return by_group


def mean_over_groups(table: Mapping[object, Mapping[str, float]]) -> dict[str, float]:
    """``{group: {pathway: gpc}}`` -> ``{pathway: mean GPC over groups}``."""
    pathways = dict.fromkeys(p for by in table.values() for p in by)
    return {p: finite_mean(np.array([by.get(p, np.nan) for by in table.values()], dtype=float)) for p in pathways}
