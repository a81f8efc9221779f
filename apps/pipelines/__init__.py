"""Pipelines: jobs that drive several stages in order (ingest, train, index, evaluate).

The refresh loop (:mod:`~hquery.pipelines.refresh`) and the demo
(:mod:`~hquery.pipelines.demo`). Nothing below this layer imports it.
"""
