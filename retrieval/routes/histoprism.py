"""``histoprism``: ssGSEA on the expression HistoPrism predicts (:mod:`hquery.training.histoprism`), through the
line its evaluation fitted onto the truth's scale. Served by the recorded HistoPrism; cross-validated by
``hquery eval compare`` on its own, so no spectrum fold fits it."""

from hquery.retrieval.routes.registry import Route, register_route

HISTOPRISM = register_route(Route("histoprism", "HistoPrism", "HP", served_by="model", in_spectrum=False,
                                  calibrated=True))
