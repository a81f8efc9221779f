"""Search the aligned RNA library: ``search(query_vectors, k) -> (ids, similarities)``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hquery.store import Store, StoreError


class RNAIndex:
    """An index version: FAISS (on the GPU when available, read on first search) and each vector's sample id."""

    def __init__(self, folder: Path, ids: list[str], version: str, model_version: str):
        self.folder, self.ids, self.version, self.model_version = folder, np.array(ids), version, model_version
        self._index = None
        self.on_gpu = False

    @classmethod
    def load(cls, store: Store, version: str | None = None) -> RNAIndex:
        """The current index (or ``version``, any older one too)."""
        version = version or store.setting("current_index")
        if not version:
            raise StoreError("no index yet; run `hquery index`")
        rows = store.query("index_version", [version])
        if not rows:
            raise StoreError(f"no index version {version!r}")
        model_version, path = rows[0]
        folder = store.artifact_path(path)
        return cls(folder, json.loads((folder / "ids.json").read_text()), version, model_version)

    @property
    def index(self):
        if self._index is None:
            import faiss
            from hquery.retrieval.index import to_device

            self._index, self.on_gpu = to_device(faiss.read_index(str(self.folder / "index.faiss")))
        return self._index

    def stored_neighbours(self) -> tuple[dict[str, int], np.ndarray, np.ndarray] | None:
        """Neighbours saved with the index for every stored slide: ``(row of sample, positions, similarities)``.

        ``None`` for an index built before they were saved.
        """
        path = self.folder / "slide_neighbours.npz"
        if not path.exists():
            return None
        with np.load(path) as data:
            rows = {s: i for i, s in enumerate(data["sample_ids"].tolist())}
            return rows, data["positions"], data["similarities"]

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
