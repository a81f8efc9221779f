"""The FAISS index over the aligned RNA library: an index version opened and searched (:class:`RNAIndex`).

Built and versioned by :func:`hquery.retrieval.index_builder.build_index`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from hquery.records import index_record
from hquery.store import Store

KINDS = ("auto", "flat", "hnsw", "ivf")


@dataclasses.dataclass(frozen=True)
class SavedNeighbours:
    """Each stored slide's nearest library positions, saved with the index.

    ``positions``/``similarities`` come from the whole library; the ``matched_*``
    ones from the library profiles sharing the slide's values in ``matched_on``
    (the default neighbour rule's columns), padded with -1 where a group is small.
    """

    row: dict[str, int]
    positions: np.ndarray
    similarities: np.ndarray
    matched_on: tuple[str, ...] | None = None
    matched_positions: np.ndarray | None = None
    matched_similarities: np.ndarray | None = None


class RNAIndex:
    """An index version: FAISS (on the GPU when available, read on first search) and each vector's sample id."""

    def __init__(self, folder: Path, ids: list[str], version: str, model_version: str):
        self.folder, self.ids, self.version, self.model_version = folder, np.array(ids), version, model_version
        self._index = None
        self._vectors: np.ndarray | None = None
        self.on_gpu = False

    @classmethod
    def load(cls, store: Store, version: str | None = None) -> RNAIndex:
        """The current index (or ``version``, any older one too)."""
        record = index_record(store, version)
        folder = store.artifact_path(record.artifact_path)
        return cls(folder, json.loads((folder / "ids.json").read_text()), record.version, record.model_version)

    @property
    def index(self):
        if self._index is None:
            import faiss

            self._index, self.on_gpu = to_device(faiss.read_index(str(self.folder / "index.faiss")))
        return self._index

    def vectors(self) -> np.ndarray:
        """The indexed library vectors ``[len(ids), d]``, in the order of :attr:`ids`, read back from the index file."""
        if self._vectors is None:
            import faiss

            index = faiss.read_index(str(self.folder / "index.faiss"))
            ivf = faiss.try_extract_index_ivf(index)
            if ivf is not None:
                ivf.make_direct_map()
            self._vectors = index.reconstruct_n(0, index.ntotal)
        return self._vectors

    def stored_neighbours(self) -> SavedNeighbours | None:
        """Neighbours saved with the index for every stored slide; ``None`` for an index built before they were."""
        path = self.folder / "slide_neighbours.npz"
        if not path.exists():
            return None
        with np.load(path) as data:
            rows = {s: i for i, s in enumerate(data["sample_ids"].tolist())}
            if "matched_on" not in data:
                return SavedNeighbours(rows, data["positions"], data["similarities"])
            return SavedNeighbours(rows, data["positions"], data["similarities"], tuple(data["matched_on"].tolist()),
                                   data["matched_positions"], data["matched_similarities"])

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


def gpu_count() -> int:
    """GPUs faiss can use (0 with faiss-cpu, which has no GPU resources at all)."""
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def build_faiss_index(vectors: np.ndarray, kind: str = "flat", *, hnsw_m: int = 32, ivf_lists: int | None = None,
                      ef_search: int = 128, nprobe: int = 16):
    """A FAISS inner-product index over L2-normalised ``vectors``."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    elif kind == "ivf":
        lists = ivf_lists or max(1, min(int(4 * np.sqrt(n)), n // 39))  # faiss wants >= 39 points a list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(nprobe, lists)
    else:
        raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)}")
    index.add(vectors)
    return index


def to_device(index):
    """Move ``index`` to the GPU when faiss-gpu and a GPU are present; otherwise return it unchanged."""
    import faiss

    if gpu_count() == 0:
        return index, False
    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, 0, index), True


def recall_against_exact(index, vectors: np.ndarray, k: int = 10, n_queries: int = 1000, seed: int = 0) -> float:
    """Mean overlap of ``index``'s top-k with exact search, for library vectors used as queries."""
    rng = np.random.default_rng(seed)
    queries = vectors[rng.choice(len(vectors), size=min(n_queries, len(vectors)), replace=False)]
    exact = build_faiss_index(vectors, "flat")
    _, truth = exact.search(queries, k)
    _, found = index.search(queries, k)
    return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found)]))
