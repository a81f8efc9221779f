"""hquery: ask an H&E slide a molecular question.

An embedded retrieval engine: H&E and RNA-seq embeddings in Lance tables, all
metadata in a DuckDB catalog, projection heads that align the two modalities,
and gene-set prompts scored on the RNA neighbours of each slide.

>>> import hquery
>>> store = hquery.connect(store_dir)          # a store made by `hquery init` (or hquery.ingest.init_store)
>>> store.summary().counts["gene_sets"]
50
"""

__version__ = "0.1.0"

from pathlib import Path  # noqa: E402

from hquery.store import Store, default_store_path  # noqa: E402


def connect(path: str | Path | None = None) -> Store:
    """Open the store at ``path`` (default: ``$HQUERY_STORE``, else ``./hquery-store``).

    Parameters
    ----------
    path
        A directory made by ``hquery init`` or :func:`hquery.ingest.init_store`.

    Returns
    -------
    Store
        The store; :class:`~hquery.errors.StoreError` if ``path`` is not one.
    """
    return Store.open(default_store_path() if path is None else path)


__all__ = ["Store", "__version__", "connect"]
