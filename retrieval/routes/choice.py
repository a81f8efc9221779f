"""Which route answers each gene set: the newest evaluation's R² of every route, and the best of them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from hquery.retrieval.routes.registry import route_names
from hquery.store import Store


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """A method's held-out R² for one gene set in evaluation ``eval_id``, and what a prompt needs to answer the
    same way: the line from raw scores to the truth's scale, and the route's recorded settings."""

    r2: float
    eval_id: str | None
    line: tuple[float, float] | None = None
    params: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RouteChoice:
    """One gene set's route, its held-out R² in evaluation ``eval_id`` (NaN with no evaluation), and the line
    from the route's raw scores to the truth's scale where the evaluation fitted one."""

    route: str
    trust: float
    eval_id: str | None
    line: tuple[float, float] | None = None


def best_route(r2: dict[str, float]) -> str:
    """The route with the highest finite R², the earlier registered on a tie (Soft-kNN when none is finite)."""
    finite = {m: v for m, v in r2.items() if v is not None and np.isfinite(v)}
    order = route_names()
    return max(finite, key=lambda m: (finite[m], -order.index(m))) if finite else "softknn"


def evaluated_r2(store: Store, gene_sets: Sequence[str]) -> dict[str, dict[str, Evaluated]]:
    """``{gene_set: {method: Evaluated}}`` from each set's newest evaluation.

    The R² is of the scores as that method's prompt returns them: calibrated for the
    registered routes (``auto`` calibrates Soft-kNN, HistoPrism goes through
    its evaluation's line), raw for ``softknn_raw`` (``--method softknn``) and
    ``histoprism_raw`` (``--method histoprism``). HistoPrism counts as a route only
    where its evaluation fitted that line (``hquery eval compare``).
    """
    out: dict[str, dict[str, Evaluated]] = {}
    for row in store.query("latest_eval_results", [list(gene_sets)]):
        by_method = out.setdefault(row.gene_set, {})
        line = (row.line_slope, row.line_intercept) if row.line_slope is not None else None
        params = json.loads(row.route_params) if row.route_params else {}
        if row.method == "histoprism":
            by_method["histoprism_raw"] = Evaluated(_float(row.r2), row.eval_id)
            if line is None:
                continue
        calibrated = row.r2_calibrated if row.r2_calibrated is not None else row.r2
        by_method[row.method] = Evaluated(_float(calibrated), row.eval_id, line, params)
        if row.method == "softknn":
            by_method["softknn_raw"] = Evaluated(_float(row.r2), row.eval_id)
    return out


def choose_routes(store: Store, gene_sets: Sequence[str], available: Iterable[str] | None = None,
                  usable: Callable[[str, Evaluated], bool] | None = None
                  ) -> tuple[dict[str, RouteChoice], list[str]]:
    """Each set's best evaluated route among ``available``, and notes for the sets never evaluated.

    ``usable(route, evaluated)`` may refuse a measurement the store cannot answer
    by (a HistoPrism evaluated on another gene panel than the one deployed, say).
    A set without an evaluation is answered by Soft-kNN, with NaN trust.
    """
    available = [r for r in route_names() if available is None or r in set(available)]
    measured = evaluated_r2(store, gene_sets)
    choices, unmeasured = {}, []
    for name in gene_sets:
        candidates = {m: e for m, e in measured.get(name, {}).items()
                      if m in available and (usable is None or usable(m, e))}
        route = best_route({m: e.r2 for m, e in candidates.items()})
        if name not in measured:
            unmeasured.append(name)
        chosen = candidates.get(route, Evaluated(float("nan"), None))
        choices[name] = RouteChoice(route, chosen.r2, chosen.eval_id, chosen.line)
    notes = []
    if unmeasured:
        notes.append(f"{len(unmeasured)} gene set(s) ({', '.join(unmeasured[:3])}{', ...' if len(unmeasured) > 3 else ''})"
                     " have no evaluation, so Soft-kNN answers them and their trust is empty; "
                     "`hquery eval spectrum` measures every route")
    return choices, notes


def trust_of(store: Store, gene_sets: Sequence[str], method: str) -> dict[str, float]:
    """Each set's held-out R² for ``method`` in its newest evaluation (NaN where none)."""
    measured = evaluated_r2(store, gene_sets)
    return {name: measured.get(name, {}).get(method, Evaluated(float("nan"), None)).r2 for name in gene_sets}


def _float(value) -> float:
    return float("nan") if value is None else float(value)
