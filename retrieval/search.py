"""Search the aligned RNA library: ``search(query_vectors, k) -> (ids, similarities)``."""

from __future__ import annotations

import json

import numpy as np

from hquery.store import Store, StoreError


class RNAIndex:
    """A loaded index version: FAISS (on the GPU when available) plus the sample id of each vector."""

    def __init__(self, index, ids: list[str], version: str, model_version: str, on_gpu: bool):
        self.index, self.ids, self.version, self.model_version, self.on_gpu = index, np.array(ids), version, model_version, on_gpu

    @classmethod
    def load(cls, store: Store, version: str | None = None) -> RNAIndex:
        """The current index (or ``version``, any older one too)."""
        import faiss
        from hquery.retrieval.index import to_device

        version = version or store.setting("current_index")
        if not version:
            raise StoreError("no index yet; run `hquery index`")
        rows = store.query("index_version", [version])
        if not rows:
            raise StoreError(f"no index version {version!r}")
        model_version, path = rows[0]
        folder = store.artifact_path(path)
        index, on_gpu = to_device(faiss.read_index(str(folder / "index.faiss")))
        return cls(index, json.loads((folder / "ids.json").read_text()), version, model_version, on_gpu)

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` library samples by inner product for each aligned, L2-normalised query.

        Returns ``(ids [n, k] of sample ids, similarities [n, k])``, best first.
        """
        positions, similarities = self.search_positions(query_vectors, k)
        return self.ids[positions], similarities

    def search_positions(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search`, with positions into :attr:`ids` instead of the ids."""
        queries = np.ascontiguousarray(np.atleast_2d(query_vectors), dtype=np.float32)
        similarities, positions = self.index.search(queries, min(k, len(self.ids)))
        return positions, similarities
