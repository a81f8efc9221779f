"""Routes: which way answers each gene set, and how far its answer can be trusted.

Five routes reach a gene-set score from a slide, one module each, in this
package's registry (:mod:`~hquery.retrieval.routes.registry`): Soft-kNN over the
aligned RNA library (``softknn``), the trained MLP on the aligned embedding
(``mlp``), the ridge from frozen slide features plus cancer type (``ridge_type``,
the floor of every evaluation), the mean of calibrated Soft-kNN and that ridge
(``ensemble``) and ssGSEA on the expression HistoPrism predicts (``histoprism``,
through the line its evaluation fitted onto the truth's scale). No route wins
every set: an immune program may be retrieved best and a stromal one read best
linearly. ``hquery eval spectrum`` measures the held-out R² per set of every
route in the spectrum and ``hquery eval compare`` adds HistoPrism;
:func:`choose_routes` takes the newest measurement of each set and picks its best
route among those the store can run now. That R² travels with every score as its
``trust``: a set no route predicts gets a score whose trust says so.

A new route is one module that registers a :class:`Route` (and its import
below); prompting and every evaluation then fit, predict and report it.

>>> route_names()
('softknn', 'mlp', 'ridge_type', 'ensemble', 'histoprism')
>>> choice = best_route({"softknn": 0.41, "mlp": float("nan"), "ridge_type": 0.52, "ensemble": 0.55})
>>> choice
'ensemble'
"""

# registration order is the order of preference on a tie
from hquery.retrieval.routes import softknn, mlp, ridge_type, ensemble, histoprism  # noqa: F401, I001  # isort: skip
from hquery.retrieval.routes.choice import (
    Evaluated,
    RouteChoice,
    best_route,
    choose_routes,
    evaluated_r2,
    trust_of,
)
from hquery.retrieval.routes.registry import (
    FLOOR,
    METHODS,
    Route,
    Slides,
    label,
    plot_label,
    predict_fitted_routes,
    register_route,
    route,
    route_names,
    routes,
    short_label,
    spectrum_route_names,
    unregister_route,
    with_needs,
)

__all__ = ["FLOOR", "METHODS", "Evaluated", "Route", "RouteChoice", "Slides", "best_route", "choose_routes", "evaluated_r2",
           "label", "plot_label", "predict_fitted_routes", "register_route", "route", "route_names", "routes",
           "short_label", "spectrum_route_names", "trust_of", "unregister_route", "with_needs"]
