"""Clinical association: does a gene set's score differ between the groups of a manifest column, or follow a
numeric one? (The seed paper's Fig. 3: predicted IFN-γ against PD-L1 groups.)

A patient counts once per value of the column: its samples that share a value
are averaged (two slides of one tumour are one observation), and samples with
different values (a primary and a metastasis, say) stay apart. The tests are
scipy's:

* two groups: Mann–Whitney U, with the rank-biserial correlation
  ``2U / (n1 n2) - 1`` as effect size (positive: the first group, in sort order,
  scores higher);
* three or more groups: Kruskal–Wallis H, with ``epsilon² = H / (n - 1)``
  (Tomczak & Tomczak 2014) as effect size;
* a numeric column: Spearman's rho, which is its own effect size.

With ``within``, each stratum (a cancer type, say) is tested on its own, so an
association that only reflects which tumour types score high does not pass for
one within them. Every p-value of a run is adjusted by Benjamini–Hochberg
(``scipy.stats.false_discovery_control``) into a ``q_value``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hquery.errors import InputError
from hquery.evaluation.clinical import (
    latest_scores,
    number,
    patients_of,
    record_analysis,
    sample_column,
    score_sources,
)
from hquery.genesets import GeneSet
from hquery.names import association_artifact
from hquery.store import Store

MAX_GROUPS = 10
"""A number-like column with more distinct values than this is numeric (Spearman); fewer, categorical."""
MIN_GROUP = 3
"""Groups with fewer patients are left out of a categorical test (and said so)."""


@dataclasses.dataclass(frozen=True)
class Association:
    """One test: a gene set's scores from one source, in one stratum, against the column."""

    gene_set: str
    source: str
    stratum: str | None
    test: str
    n: int
    n_groups: int | None
    statistic: float
    effect: float
    effect_name: str
    p_value: float
    q_value: float
    groups: dict
    """Per group: ``{"n": patients, "median": median score}`` (categorical only)."""


@dataclasses.dataclass
class AssociationReport:
    """What :func:`associate` tested, found and drew."""

    run_id: str | None
    column: str
    kind: str
    within: str | None
    results: list[Association]
    notes: list[str]
    plots: dict[str, Path]
    """Gene set -> PNG (group box plots or a scatter, one panel per source)."""


def associate(store: Store, gene_sets: Sequence[GeneSet], by: str, *, source: str = "predicted",
              within: str | None = None, kind: str = "auto", plot: bool = True,
              record: bool = True) -> AssociationReport:
    """Test each gene set's scores against the manifest column ``by``.

    Parameters
    ----------
    gene_sets
        The sets to test (:func:`~hquery.genesets.resolve_prompts`).
    by
        ``cohort``, ``cancer_type`` or a clinical column of the manifest.
    source
        ``predicted`` (from the slides), ``measured`` (from the samples' RNA) or ``both``.
        Each set's newest recorded slide-level run of that source is used; where there
        is none, it is scored now (``hquery prompt`` / ``hquery score``) and recorded.
    within
        A column to stratify by (e.g. ``cancer_type``): one test per value.
    kind
        ``categorical``, ``numeric`` or ``auto`` (numeric when every value is a number
        and there are more than :data:`MAX_GROUPS` distinct ones).

    Returns
    -------
    AssociationReport, also recorded in ``association_runs`` / ``association_results``.

    Examples
    --------
    >>> from hquery.genesets import resolve_prompts
    >>> report = associate(store, resolve_prompts(store, ["MKI67,TOP2A,CD8A,COL1A1,VIM"]), "stage",
    ...                    source="measured", plot=False)
    >>> report.kind, report.results[0].test, report.results[0].n
    ('categorical', 'kruskal_wallis', 30)
    """
    from scipy.stats import false_discovery_control

    sources = score_sources(source)
    if kind not in ("auto", "categorical", "numeric"):
        raise InputError(f"kind must be auto, categorical or numeric, not {kind!r}")
    values, strata = sample_column(store, by), sample_column(store, within) if within else None
    sample_patient = patients_of(store)
    kind = _kind(values) if kind == "auto" else kind
    if kind == "numeric":
        bad = sorted({v for v in values.values() if number(v) is None})
        if bad:
            raise InputError(f"column {by!r} is not numeric: {', '.join(map(repr, bad[:5]))}")
    notes: list[str] = []
    tests: list[dict] = []
    frames: dict[tuple[str, str], tuple[list, np.ndarray]] = {}
    for gs in gene_sets:
        for src in sources:
            by_patient = _per_patient(latest_scores(store, gs, src), values, strata, sample_patient)
            if None in by_patient:
                frames[gs.name, src] = by_patient[None]
            for stratum, (labels, x) in by_patient.items():
                row = _test(labels, x, kind, notes, f"{gs.name} ({src}{'' if stratum is None else ', ' + stratum})")
                if row is not None:
                    tests.append({"gene_set": gs.name, "source": src, "stratum": stratum, **row})
    if not tests:
        raise InputError(f"nothing to test: no gene set has two groups of at least {MIN_GROUP} patients "
                         f"(or {MIN_GROUP} patients with a number) in column {by!r}")
    q = false_discovery_control([t["p_value"] for t in tests], method="bh")
    results = [Association(**t, q_value=float(qv)) for t, qv in zip(tests, q)]
    report = AssociationReport(None, by, kind, within, results, list(dict.fromkeys(notes)), {})
    if record:
        _record(store, report, sources, plot, frames)
    return report


def _kind(values: dict[str, str]) -> str:
    distinct = set(values.values())
    numeric = all(number(v) is not None for v in distinct)
    return "numeric" if numeric and len(distinct) > MAX_GROUPS else "categorical"


def _per_patient(scores: dict[str, float], values: dict[str, str], strata: dict[str, str] | None,
                 sample_patient: dict[str, str]) -> dict:
    """``{stratum: (labels, scores)}``, one score per patient and value (the mean over its samples that share
    it); stratum ``None`` holds them all."""
    units: dict[tuple, list[float]] = {}
    for sample, score in scores.items():
        if sample in values:
            stratum = strata.get(sample) if strata is not None else None
            units.setdefault((sample_patient[sample], values[sample], stratum), []).append(score)
    out: dict = {}
    for (patient, label, stratum), found in sorted(units.items(), key=lambda kv: tuple(map(str, kv[0]))):
        for key in [None] + ([stratum] if stratum is not None else []):
            labels, x = out.setdefault(key, ([], []))
            labels.append(label)
            x.append(float(np.mean(found)))
    return {k: (labels, np.array(x)) for k, (labels, x) in out.items()}


def _test(labels: list[str], x: np.ndarray, kind: str, notes: list[str], what: str) -> dict | None:
    from scipy.stats import kruskal, mannwhitneyu, spearmanr

    if kind == "numeric":
        if len(x) < MIN_GROUP:
            notes.append(f"{what}: fewer than {MIN_GROUP} patients; not tested")
            return None
        rho, p = spearmanr([float(v) for v in labels], x)
        return {"test": "spearman", "n": len(x), "n_groups": None, "statistic": float(rho), "effect": float(rho),
                "effect_name": "spearman_rho", "p_value": float(p), "groups": {}}
    groups = {g: x[[i for i, v in enumerate(labels) if v == g]] for g in sorted(set(labels))}
    small = [g for g, v in groups.items() if len(v) < MIN_GROUP]
    if small:
        notes.append(f"{what}: group(s) {', '.join(small)} with fewer than {MIN_GROUP} patients left out")
    groups = {g: v for g, v in groups.items() if len(v) >= MIN_GROUP}
    if len(groups) < 2:
        notes.append(f"{what}: fewer than two groups to compare; not tested")
        return None
    n = sum(len(v) for v in groups.values())
    summary = {g: {"n": len(v), "median": float(np.median(v))} for g, v in groups.items()}
    if len(groups) == 2:
        a, b = groups.values()
        u, p = mannwhitneyu(a, b, alternative="two-sided")
        return {"test": "mann_whitney", "n": n, "n_groups": 2, "statistic": float(u),
                "effect": float(2 * u / (len(a) * len(b)) - 1), "effect_name": "rank_biserial",
                "p_value": float(p), "groups": summary}
    h, p = kruskal(*groups.values())
    return {"test": "kruskal_wallis", "n": n, "n_groups": len(groups), "statistic": float(h),
            "effect": float(h / (n - 1)), "effect_name": "epsilon_squared", "p_value": float(p), "groups": summary}


def _record(store: Store, report: AssociationReport, sources: Sequence[str], plot: bool, frames: dict) -> None:
    record_analysis(store, report, prefix="assoc", runs="association_runs", results="association_results",
                    run_row={"column_name": report.column, "kind": report.kind, "within_column": report.within,
                             "params": json.dumps({"sources": list(sources), "notes": report.notes})},
                    artifact=association_artifact, draw=plot_association if plot else None, frames=frames,
                    sources=sources)


def plot_association(report: AssociationReport, gene_set: str, frames: dict, path: Path) -> Path:
    """A PNG with one panel per score source: box plots per group (categorical) or a scatter (numeric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(frames), figsize=(5 * len(frames), 4), squeeze=False, constrained_layout=True)
    for ax, (source, (labels, x)) in zip(axes[0], frames.items()):
        found = next((r for r in report.results if r.gene_set == gene_set and r.source == source
                      and r.stratum is None), None)
        if report.kind == "numeric":
            ax.scatter([float(v) for v in labels], x, s=8, alpha=0.6)
            ax.set_xlabel(report.column)
        else:
            groups = sorted(set(labels))
            data = [x[[i for i, v in enumerate(labels) if v == g]] for g in groups]
            ax.boxplot(data, showfliers=False)
            ax.set_xticks(range(1, len(groups) + 1), groups)
            rng = np.random.default_rng(0)
            for i, values in enumerate(data, start=1):
                ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=5, alpha=0.4)
            ax.set_xlabel(report.column)
        title = f"{source}"
        if found is not None:
            title += f": {found.test.replace('_', '-')} p={found.p_value:.2g}, q={found.q_value:.2g}"
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(f"{gene_set.removeprefix('HALLMARK_')} score")
    fig.suptitle(f"{gene_set} by {report.column}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
