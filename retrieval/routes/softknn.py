"""``softknn``: the weighted mean of the slide's RNA neighbours' scores in the aligned space.

Served by the index (:mod:`hquery.retrieval.prompt`) and, in an evaluation, by
each fold's own exact index over the library without the held-out patients.
Under ``auto`` its scores go through the line ``truth ~ score`` fitted on the
paired slides, each predicted from the library without its own patient.
"""

from hquery.retrieval.routes.registry import Route, register_route

SOFTKNN = register_route(Route("softknn", "Soft-kNN", "kNN", served_by="index", calibrated=True, dispersion=True))
