"""Ingest: everything that writes data into a store.

Cohort manifests, expression matrices, slides (tile folders, whole-slide images,
precomputed feature files), frozen image and RNA encoders, and gene sets.
:func:`ingest_cohort` is the one entry point that writes a cohort, atomically;
:func:`reembed_slides` embeds the stored slides again with a PEKA-adapted backbone.
"""

from hquery.ingest.cohort import IngestError, IngestReport, ReembedReport, ingest_cohort, reembed_slides

__all__ = ["IngestError", "IngestReport", "ReembedReport", "ingest_cohort", "reembed_slides"]
