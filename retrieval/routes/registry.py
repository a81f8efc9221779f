"""The registry of routes: every way hquery reaches a gene-set score from a slide, one entry each.

A route is a :class:`Route`: its name, its labels, and how it is fitted and
predicts. Prompting (``run_prompt``), the predictability spectrum, ``eval
compare`` and ``eval transfer`` all read this registry, so a new route is one
module that calls :func:`register_route` (and its import in
``hquery.retrieval.routes``).

Routes differ in what serves them. Soft-kNN is answered by the index
(``served_by="index"``); the MLP and HistoPrism by a model trained and recorded
beforehand (``"model"``); the rest are fitted on the paired slides when a prompt
asks for them (``"pairs"``), exactly as each fold of an evaluation fits them on
its training slides. For the last two kinds, :attr:`Route.fit` and
:attr:`Route.predict` are the one recipe both use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Slides:
    """Slides (or tiles) as a route sees them, in fitting and in prediction alike."""

    image: np.ndarray | None
    """The image encoder's own embeddings ``[n, d]`` (frozen features)."""
    aligned: np.ndarray | None
    """The same slides in the alignment model's shared space ``[n, a]``."""
    cancer_types: np.ndarray
    """Each slide's cancer type (``None`` or ``"unknown"`` where the manifest gives none)."""


Fit = Callable[[Slides, np.ndarray, int], Any]
"""``fit(train, truth, seed)``: a fitted route from training slides and their true scores ``[n, sets]``."""
Predict = Callable[[Any, Slides, dict[str, np.ndarray]], np.ndarray]
"""``predict(fitted, query, earlier)``: scores ``[n, sets]``; ``earlier`` holds the scores, on the truth's scale,
of the routes this one :attr:`~Route.needs`."""


@dataclasses.dataclass(frozen=True)
class Route:
    """One route from a slide to a gene-set score.

    Parameters
    ----------
    name
        What ``--method`` and the catalog's ``method`` and ``route`` columns say.
    label, short_label
        The name in plots and tables, and a column prefix of at most five characters.
    fit, predict
        The recipe (see :data:`Fit`, :data:`Predict`); ``None`` for Soft-kNN, which the index serves and each
        fold searches, and for HistoPrism, which ``eval compare`` cross-validates on its own.
    served_by
        ``"pairs"``: a prompt fits it on every paired slide; ``"index"``: Soft-kNN; ``"model"``: a trained,
        recorded model (the MLP, HistoPrism).
    uses
        What :class:`Slides` fields ``fit`` and ``predict`` read (``"image"``, ``"aligned"``).
    needs
        Routes whose scores ``predict`` combines (the ensemble's Soft-kNN and ridge).
    in_spectrum
        Scored by every ``hquery eval spectrum`` (HistoPrism joins only in ``eval compare``).
    calibrated
        Its raw scores are put on the truth's scale by a line before they are compared.
    dispersion
        Its scores carry the Soft-kNN neighbours' dispersion.
    """

    name: str
    label: str
    short_label: str
    fit: Fit | None = None
    predict: Predict | None = None
    served_by: str = "pairs"
    uses: frozenset[str] = frozenset()
    needs: tuple[str, ...] = ()
    in_spectrum: bool = True
    calibrated: bool = False
    dispersion: bool = False

    @property
    def fitted_on_folds(self) -> bool:
        """Whether each evaluation fold fits and predicts it with :attr:`fit` and :attr:`predict`."""
        return self.in_spectrum and self.fit is not None and self.predict is not None


_REGISTRY: dict[str, Route] = {}

FLOOR = "ridge_type"
"""The route every evaluation measures the others against."""


def register_route(route: Route) -> Route:
    """Add ``route`` after the routes registered so far (the order breaks ties between equal R²)."""
    if route.name in _REGISTRY or route.name == "auto":
        raise ValueError(f"a route named {route.name!r} is already registered")
    missing = [n for n in route.needs if n not in _REGISTRY]
    if missing:
        raise ValueError(f"route {route.name!r} needs {', '.join(missing)}, registered before it")
    if route.served_by not in ("pairs", "index", "model"):
        raise ValueError(f"served_by must be pairs, index or model, not {route.served_by!r}")
    _REGISTRY[route.name] = route
    return route


def unregister_route(name: str) -> None:
    """Remove the route ``name`` (a route registered for an experiment or a test)."""
    dependants = [r.name for r in _REGISTRY.values() if name in r.needs]
    if dependants:
        raise ValueError(f"routes {', '.join(dependants)} need {name!r}")
    del _REGISTRY[name]


def route(name: str) -> Route:
    """The registered route ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"no route {name!r}; routes: {', '.join(_REGISTRY)}") from None


def routes() -> tuple[Route, ...]:
    """Every registered route, in order."""
    return tuple(_REGISTRY.values())


def route_names() -> tuple[str, ...]:
    """The names of :func:`routes`: what ``auto`` chooses among, in order of preference on a tie."""
    return tuple(_REGISTRY)


class _Methods(Sequence):
    """``auto`` and every registered route's name, as they are now (a route registered later shows too)."""

    def _names(self) -> tuple[str, ...]:
        return ("auto", *_REGISTRY)

    def __getitem__(self, i):
        return self._names()[i]

    def __len__(self) -> int:
        return len(_REGISTRY) + 1

    def __repr__(self) -> str:
        return repr(self._names())


METHODS: Sequence[str] = _Methods()
"""What a prompt's ``method`` may be: ``auto`` or a registered route (a live view of the registry)."""


def spectrum_route_names() -> tuple[str, ...]:
    """The routes every predictability spectrum scores."""
    return tuple(r.name for r in _REGISTRY.values() if r.in_spectrum)


def label(name: str) -> str:
    """The display name of a route, or of ``auto``."""
    return "auto" if name == "auto" else route(name).label


def short_label(name: str) -> str:
    return "auto" if name == "auto" else route(name).short_label


def plot_label(name: str) -> str:
    """The label a bar chart gives the route: the floor and the calibrated routes say so."""
    if name == "auto":
        return "auto"
    entry = route(name)
    return entry.label + (" (floor)" if name == FLOOR else " (calibrated)" if entry.calibrated else "")


def with_needs(names) -> list[str]:
    """``names`` and every route they need, in registry order."""
    wanted = set(names)
    for entry in reversed(routes()):
        if entry.name in wanted:
            wanted |= set(entry.needs)
    return [n for n in route_names() if n in wanted]


def predict_fitted_routes(train: Slides, truth: np.ndarray, query: Slides, seed: int,
                          earlier: dict[str, np.ndarray], names) -> dict[str, np.ndarray]:
    """Fit every route of ``names`` that has a recipe on ``train`` and predict ``query``, in registry order.

    ``earlier`` holds scores already on the truth's scale (calibrated Soft-kNN);
    each route's scores join it for the routes after it. Returns the new scores.
    """
    scores = dict(earlier)
    out = {}
    for entry in routes():
        if entry.name not in names or entry.fit is None or entry.predict is None:
            continue
        if any(n not in scores for n in entry.needs):
            continue
        out[entry.name] = scores[entry.name] = entry.predict(entry.fit(train, truth, seed), query, scores)
    return out
