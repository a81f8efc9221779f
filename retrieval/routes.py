"""Which route answers each gene set, and how far its answer can be trusted.

Four routes reach a gene-set score from a slide: Soft-kNN over the aligned RNA
library (``softknn``), the trained MLP on the aligned embedding (``mlp``), the
ridge from frozen slide features plus cancer type (``ridge_type``, the floor of
every evaluation) and the mean of calibrated Soft-kNN and that ridge
(``ensemble``). No route wins every set: an immune program may be retrieved best
and a stromal one read best linearly. ``hquery eval spectrum`` measures each
route's held-out R² per set; :func:`choose_routes` takes the newest measurement
of each set and picks its best route among those the store can run now. That R²
travels with every score as its ``trust``: a set no route predicts gets a score
whose trust says so.

>>> choice = best_route({"softknn": 0.41, "mlp": float("nan"), "ridge_type": 0.52, "ensemble": 0.55})
>>> choice
'ensemble'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from hquery.store import Store

ROUTES = ("softknn", "mlp", "ridge_type", "ensemble")
"""The routes ``auto`` chooses among, in order of preference on a tie."""


@dataclasses.dataclass(frozen=True)
class RouteChoice:
    """One gene set's route, its held-out R² in evaluation ``eval_id`` (NaN with no evaluation)."""

    route: str
    trust: float
    eval_id: str | None


def best_route(r2: dict[str, float]) -> str:
    """The route with the highest finite R², the earlier of :data:`ROUTES` on a tie (Soft-kNN when none is finite)."""
    finite = {m: v for m, v in r2.items() if v is not None and np.isfinite(v)}
    return max(finite, key=lambda m: (finite[m], -ROUTES.index(m))) if finite else "softknn"


def evaluated_r2(store: Store, gene_sets: Sequence[str]) -> dict[str, dict[str, tuple[float, str]]]:
    """``{gene_set: {method: (R², eval_id)}}`` from each set's newest evaluation.

    The R² is of the scores as that method's prompt returns them: calibrated for the
    routes of :data:`ROUTES` (``auto`` calibrates Soft-kNN), raw for ``softknn_raw``
    (``--method softknn``) and ``histoprism``.
    """
    out: dict[str, dict[str, tuple[float, str]]] = {}
    for row in store.query("latest_eval_results", [list(gene_sets)]):
        by_method = out.setdefault(row.gene_set, {})
        calibrated = row.r2_calibrated if row.r2_calibrated is not None else row.r2
        by_method[row.method] = (_float(calibrated), row.eval_id)
        if row.method == "softknn":
            by_method["softknn_raw"] = (_float(row.r2), row.eval_id)
    return out


def choose_routes(store: Store, gene_sets: Sequence[str], available: Iterable[str] = ROUTES
                  ) -> tuple[dict[str, RouteChoice], list[str]]:
    """Each set's best evaluated route among ``available``, and notes for the sets never evaluated.

    A set without an evaluation is answered by Soft-kNN, with NaN trust.
    """
    available = [r for r in ROUTES if r in set(available)]
    measured = evaluated_r2(store, gene_sets)
    choices, unmeasured = {}, []
    for name in gene_sets:
        r2 = {m: measured.get(name, {}).get(m, (float("nan"), None)) for m in available}
        route = best_route({m: v for m, (v, _) in r2.items()})
        if name not in measured:
            unmeasured.append(name)
        choices[name] = RouteChoice(route, *r2.get(route, (float("nan"), None)))
    notes = []
    if unmeasured:
        notes.append(f"{len(unmeasured)} gene set(s) ({', '.join(unmeasured[:3])}{', ...' if len(unmeasured) > 3 else ''})"
                     " have no evaluation, so Soft-kNN answers them and their trust is empty; "
                     "`hquery eval spectrum` measures every route")
    return choices, notes


def trust_of(store: Store, gene_sets: Sequence[str], method: str) -> dict[str, float]:
    """Each set's held-out R² for ``method`` in its newest evaluation (NaN where none)."""
    measured = evaluated_r2(store, gene_sets)
    return {name: measured.get(name, {}).get(method, (float("nan"), None))[0] for name in gene_sets}


def _float(value) -> float:
    return float("nan") if value is None else float(value)
