"""Ingest: everything that writes data into a store.

Cohort manifests, expression matrices, slides (tile folders, whole-slide images,
precomputed feature files), frozen image and RNA encoders, and gene sets.
:func:`ingest_cohort` is the one entry point that writes a cohort, atomically,
encoding in this process or on Ray workers (:mod:`hquery.ingest.distributed`);
:func:`~hquery.ingest.embed.reembed_slides` embeds the stored slides again with
a PEKA-adapted backbone.

>>> import tempfile
>>> from hquery.ingest import init_store
>>> init_store(tempfile.mkdtemp() + "/store")
True
"""

from hquery.ingest.cohort import IngestReport, ingest_cohort
from hquery.ingest.embed import ReembedReport, reembed_slides
from hquery.ingest.genesets import add_gene_sets, import_gene_aliases, init_store, list_gene_sets
from hquery.ingest.slides import TilingOptions

__all__ = [
    "IngestReport", "ReembedReport", "TilingOptions", "add_gene_sets", "import_gene_aliases", "ingest_cohort",
    "init_store", "list_gene_sets", "reembed_slides",
]
