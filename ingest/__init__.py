"""Ingest: everything that writes data into a store.

Cohort manifests, expression matrices, slides (tile folders, whole-slide images,
precomputed feature files), frozen image and RNA encoders, and gene sets.
:func:`ingest_cohort` is the one entry point that writes a cohort, atomically.
"""

from hquery.ingest.cohort import IngestError, IngestReport, ingest_cohort

__all__ = ["IngestError", "IngestReport", "ingest_cohort"]
