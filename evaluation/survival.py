"""Survival by a gene set's score (the seed paper's Fig. 3): Kaplan–Meier curves of the patients split at the
score's median (or tertiles), the log-rank test between them, and a Cox model of the score per standard deviation.

Everything statistical is lifelines': ``KaplanMeierFitter`` for the curves and
median survival, ``multivariate_logrank_test`` for the p-value (two or three
groups), ``CoxPHFitter`` for the hazard ratio and its 95% interval. A patient is
one observation: its score is the mean over its samples, and its time and event
must agree across them (a patient whose samples disagree is left out, and the
notes say so).
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
from hquery.names import survival_artifact
from hquery.store import Store

SPLITS = {"median": ("low", "high"), "tertile": ("low", "middle", "high")}
MIN_PATIENTS = 10


@dataclasses.dataclass(frozen=True)
class SurvivalResult:
    """One gene set from one score source: the groups' curves summarised, log-rank and Cox."""

    gene_set: str
    source: str
    n: int
    n_events: int
    logrank_p: float
    hazard_ratio: float
    """Cox, per standard deviation of the score."""
    hr_lower: float
    hr_upper: float
    cox_p: float
    groups: dict
    """Per group: ``{"n", "events", "median_months"}`` (median survival; ``None`` where the curve stays above 0.5)."""


@dataclasses.dataclass
class SurvivalReport:
    run_id: str | None
    time: str
    event: str
    split: str
    results: list[SurvivalResult]
    notes: list[str]
    plots: dict[str, Path]


def survival(store: Store, gene_sets: Sequence[GeneSet], time: str, event: str, *, source: str = "predicted",
             split: str = "median", plot: bool = True, record: bool = True) -> SurvivalReport:
    """Kaplan–Meier by a split of each gene set's score, log-rank p and Cox hazard ratio per SD.

    Parameters
    ----------
    time, event
        Manifest columns: follow-up time, and 1 (event) or 0 (censored).
    source
        ``predicted``, ``measured`` or ``both`` (see :func:`~hquery.evaluation.association.associate`).
    split
        ``median`` (low / high) or ``tertile`` (low / middle / high).

    Returns
    -------
    SurvivalReport, also recorded in ``survival_runs`` / ``survival_results``.
    """
    from lifelines import CoxPHFitter
    from lifelines.statistics import multivariate_logrank_test

    sources = score_sources(source)
    if split not in SPLITS:
        raise InputError(f"split must be {' or '.join(SPLITS)}, not {split!r}")
    times, events = _follow_up(store, time, event)
    sample_patient = patients_of(store)
    notes: list[str] = []
    results, frames = [], {}
    for gs in gene_sets:
        for src in sources:
            t, e, x = _per_patient(latest_scores(store, gs, src), times, events, sample_patient, notes)
            if len(x) < MIN_PATIENTS or e.sum() < 2:
                notes.append(f"{gs.name} ({src}): {len(x)} patients with {int(e.sum())} events; not tested")
                continue
            groups = _split(x, split)
            logrank = multivariate_logrank_test(t, groups, e)
            z = (x - x.mean()) / x.std()
            cox = CoxPHFitter().fit(_frame(t, e, z), duration_col="time", event_col="event")
            row = cox.summary.loc["score"]
            results.append(SurvivalResult(
                gs.name, src, len(x), int(e.sum()), float(logrank.p_value), float(row["exp(coef)"]),
                float(row["exp(coef) lower 95%"]), float(row["exp(coef) upper 95%"]), float(row["p"]),
                _group_summary(t, e, groups)))
            frames[gs.name, src] = (t, e, groups)
    if not results:
        raise InputError(f"nothing to test: no gene set has {MIN_PATIENTS} patients with {time!r} and {event!r}")
    report = SurvivalReport(None, time, event, split, results, list(dict.fromkeys(notes)), {})
    if record:
        _record(store, report, sources, plot, frames)
    return report


def _follow_up(store: Store, time: str, event: str) -> tuple[dict[str, float], dict[str, int]]:
    raw_t, raw_e = sample_column(store, time), sample_column(store, event)
    times, events = {}, {}
    for sample, text in raw_t.items():
        value = number(text)
        if value is None or value < 0:
            raise InputError(f"sample {sample}: {time} = {text!r} is not a time (a number, 0 or more)")
        if sample in raw_e:
            flag = number(raw_e[sample])
            if flag not in (0, 1):
                raise InputError(f"sample {sample}: {event} = {raw_e[sample]!r}; an event is 1 (it happened) or "
                                 "0 (censored)")
            times[sample], events[sample] = value, int(flag)
    return times, events


def _per_patient(scores, times, events, sample_patient, notes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    by_patient: dict[str, dict] = {}
    for sample, score in scores.items():
        if sample in times:
            entry = by_patient.setdefault(sample_patient[sample], {"scores": [], "follow_up": set()})
            entry["scores"].append(score)
            entry["follow_up"].add((times[sample], events[sample]))
    mixed = [p for p, v in by_patient.items() if len(v["follow_up"]) > 1]
    if mixed:
        notes.append(f"{len(mixed)} patient(s) whose samples disagree on follow-up were left out")
    kept = [v for p, v in sorted(by_patient.items()) if len(v["follow_up"]) == 1]
    t = np.array([next(iter(v["follow_up"]))[0] for v in kept])
    e = np.array([next(iter(v["follow_up"]))[1] for v in kept])
    return t, e, np.array([np.mean(v["scores"]) for v in kept])


def _split(x: np.ndarray, split: str) -> np.ndarray:
    names = SPLITS[split]
    edges = np.quantile(x, np.linspace(0, 1, len(names) + 1)[1:-1])
    return np.array(names, dtype=object)[np.searchsorted(edges, x, side="right")]


def _frame(t, e, z):
    import pandas as pd

    return pd.DataFrame({"time": t, "event": e, "score": z})


def _group_summary(t, e, groups) -> dict:
    from lifelines import KaplanMeierFitter

    out = {}
    for g in next(names for names in SPLITS.values() if set(groups) <= set(names)):
        at = groups == g
        median = KaplanMeierFitter().fit(t[at], e[at]).median_survival_time_
        out[str(g)] = {"n": int(at.sum()), "events": int(e[at].sum()),
                       "median_months": float(median) if np.isfinite(median) else None}
    return out


def _record(store: Store, report: SurvivalReport, sources: Sequence[str], plot: bool, frames: dict) -> None:
    record_analysis(store, report, prefix="surv", runs="survival_runs", results="survival_results",
                    run_row={"time_column": report.time, "event_column": report.event, "split": report.split,
                             "params": json.dumps({"sources": list(sources), "notes": report.notes})},
                    artifact=survival_artifact, draw=plot_survival if plot else None, frames=frames,
                    sources=sources)


def plot_survival(report: SurvivalReport, gene_set: str, frames: dict, path: Path) -> Path:
    """A PNG with one panel per score source: the Kaplan–Meier curve of each group, with its confidence band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lifelines import KaplanMeierFitter

    fig, axes = plt.subplots(1, len(frames), figsize=(5.5 * len(frames), 4.2), squeeze=False,
                             constrained_layout=True)
    for ax, (source, (t, e, groups)) in zip(axes[0], frames.items()):
        for g in SPLITS[report.split]:
            at = groups == g
            if at.any():
                KaplanMeierFitter(label=f"{g} (n={int(at.sum())})").fit(t[at], e[at]).plot_survival_function(ax=ax)
        found = next(r for r in report.results if r.gene_set == gene_set and r.source == source)
        ax.set_title(f"{source}: log-rank p={found.logrank_p:.2g}; HR/SD {found.hazard_ratio:.2f} "
                     f"({found.hr_lower:.2f}-{found.hr_upper:.2f})", fontsize=9)
        ax.set_xlabel(report.time)
        ax.set_ylabel("survival")
    fig.suptitle(f"{gene_set} score, {report.split} split", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
