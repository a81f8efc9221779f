"""The FAISS index over the aligned RNA library: an index version opened and searched (:class:`RNAIndex`).

Built and versioned by :func:`hquery.retrieval.index_builder.build_index`.
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hquery.parallel import RayOptions, available_cpus, ray_map
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


IVF_TRAIN_PER_LIST = 64
"""Training points per IVF list drawn from the library (FAISS warns under 39; k-means gains little past ~256)."""


def build_faiss_index(vectors: np.ndarray, kind: str = "flat", *, hnsw_m: int = 32, ivf_lists: int | None = None,
                      ef_search: int = 128, nprobe: int = 16, shards: int = 1, engine: RayOptions | None = None,
                      seed: int = 0):
    """A FAISS inner-product index over L2-normalised ``vectors``.

    An IVF index's coarse quantizer is trained on a sample (:data:`IVF_TRAIN_PER_LIST`
    points a list), then filled in ``shards``: each a copy of the trained empty
    index that adds its slice of the library, in threads side by side (FAISS
    releases the GIL) or, with ``engine``, as Ray tasks; the shards are merged into
    one index (``merge_from``), which answers exactly as one filled at once.
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    if shards > 1 and kind != "ivf":
        raise ValueError(f"only an IVF index is filled in shards, not {kind!r}")
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    elif kind == "ivf":
        lists = ivf_lists or max(1, min(int(4 * np.sqrt(n)), n // 39))  # faiss wants >= 39 points a list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
        sample = min(n, lists * IVF_TRAIN_PER_LIST)
        rows = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False)) if sample < n else slice(None)
        index.train(vectors[rows])
        index.nprobe = min(nprobe, lists)
        if shards > 1:
            return fill_ivf_shards(index, vectors, shards, engine)
    else:
        raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)}")
    index.add(vectors)
    return index


def fill_ivf_shards(trained, vectors: np.ndarray, shards: int, engine: RayOptions | None = None):
    """``trained`` (an empty, trained IVF index) filled with ``vectors`` in ``shards`` added side by side, merged."""
    import faiss

    bounds = np.linspace(0, len(vectors), shards + 1).astype(np.int64)
    empty = faiss.serialize_index(trained)
    jobs = [(empty, vectors[a:b], int(a)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    if engine is None:
        with ThreadPoolExecutor(min(len(jobs), available_cpus())) as pool:
            filled = list(pool.map(lambda job: _fill_shard(*job), jobs))
    else:
        filled = list(ray_map(_fill_shard, jobs, engine))
    merged = faiss.deserialize_index(empty)
    for shard in filled:
        merged.merge_from(faiss.deserialize_index(shard), 0)
    merged.nprobe = trained.nprobe
    return merged


def _fill_shard(empty: np.ndarray, vectors: np.ndarray, first_id: int) -> np.ndarray:
    """One shard of :func:`fill_ivf_shards`: rows ``first_id ...`` added to a copy of the trained empty index."""
    import faiss

    shard = faiss.deserialize_index(empty)
    shard.add_with_ids(vectors, np.arange(first_id, first_id + len(vectors), dtype=np.int64))
    return faiss.serialize_index(shard)


def to_device(index):
    """Move ``index`` to the GPU when faiss-gpu and a GPU are present; otherwise return it unchanged."""
    import faiss

    if gpu_count() == 0:
        return index, False
    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, 0, index), True


def recall_against_exact(index, vectors: np.ndarray, k: int = 10, n_queries: int = 1000, seed: int = 0) -> float:
    """Mean overlap of ``index``'s top-k with exact search, for library vectors used as queries."""
    queries, truth = _exact_sample(vectors, k, n_queries, seed)
    return _overlap(index, queries, truth, k)


IVF_RECALL_TARGET = 0.95
"""The recall@10 against exact search an IVF index is tuned to reach at build (:func:`tune_nprobe`)."""


def tune_nprobe(index, vectors: np.ndarray, target: float = IVF_RECALL_TARGET, k: int = 10, n_queries: int = 1000,
                seed: int = 0) -> float:
    """Double an IVF index's ``nprobe`` (from its own) until its recall@k against exact search, for a sample of
    library vectors as queries, reaches ``target`` or every list is probed; returns the recall reached."""
    queries, truth = _exact_sample(vectors, k, n_queries, seed)
    recall = _overlap(index, queries, truth, k)
    while recall < target and index.nprobe < index.nlist:
        index.nprobe = min(index.nprobe * 2, index.nlist)
        recall = _overlap(index, queries, truth, k)
    return recall


def _exact_sample(vectors: np.ndarray, k: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    queries = vectors[rng.choice(len(vectors), size=min(n_queries, len(vectors)), replace=False)]
    _, truth = build_faiss_index(vectors, "flat").search(queries, k)
    return queries, truth


def _overlap(index, queries: np.ndarray, truth: np.ndarray, k: int) -> float:
    _, found = index.search(queries, k)
    return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found)]))
