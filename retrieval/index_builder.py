"""Build an index version: project the RNA library with an alignment model, index it, make it current.

``hquery index`` projects every stored RNA profile (pairs and reference
library) with the current alignment model, writes the projected vectors to
Lance, builds a FAISS index and only then switches the catalog's current
pointer, so readers never see a half-built index. Exact inner product
(``IndexFlatIP``) is the default; above ``approximate_above`` vectors an HNSW
or IVF index is built and its recall against exact search is reported. The
slides and tiles are projected through the image head too, so prompts need no torch.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pyarrow as pa

from hquery.names import Pointer, embedding_table, index_artifact, projected_table
from hquery.parallel import RayOptions
from hquery.retrieval.index import build_faiss_index, gpu_count, recall_against_exact, tune_nprobe
from hquery.retrieval.neighbours import DEFAULT_MATCH, SampleMetadata, nearest_within, plan_neighbours
from hquery.retrieval.softknn import most_profiles_per_patient
from hquery.store import Store, StoreError, build_id, utcnow
from hquery.store import vectors as as_matrix
from hquery.training.fit import project
from hquery.training.pairs import cancer_types
from hquery.training.registry import load_model

NEIGHBOURS_CACHED = 64
"""Each stored slide's nearest library profiles are kept with the index (plus room to skip its own patient's),
so a prompt with ``k`` up to this needs no search."""


@dataclasses.dataclass
class IndexReport:
    version: str
    model_version: str
    kind: str
    n_vectors: int
    dim: int
    recall_vs_exact: float | None
    on_gpu: bool
    seconds: float


def build_index(store: Store, *, kind: str = "auto", approximate_above: int = 200_000,
                model_version: str | None = None, shards: int = 1, engine: RayOptions | None = None) -> IndexReport:
    """Project the RNA library with an alignment model, index it and make it current.

    Parameters
    ----------
    kind
        ``flat`` (exact inner product), ``hnsw``, ``ivf``, or ``auto``: flat up to
        ``approximate_above`` vectors, HNSW beyond.
    model_version
        The alignment model (default: the current slide model).
    shards, engine
        Fill an IVF index in this many shards side by side (threads, or Ray tasks
        with ``engine``), merged into one (:func:`~hquery.retrieval.index.fill_ivf_shards`).
        An IVF index probes as many lists as it takes to reach recall@10 of 0.95
        against exact search on 1,000 library vectors (:func:`~hquery.retrieval.index.tune_nprobe`).

    Returns
    -------
    IndexReport
        The new index version (now current), its size, kind and recall against exact search.

    Examples
    --------
    >>> report = build_index(store)
    >>> report.kind, report.n_vectors
    ('flat', 30)
    """
    import faiss

    started = time.perf_counter()
    model, record = load_model(store, "alignment", model_version)
    rna_encoder = record.params["rna_encoder"]
    table = store.dataset(embedding_table("rna", rna_encoder))
    if table is None:
        raise StoreError(f"no RNA embeddings for encoder {rna_encoder}, which model {record.version} was trained on")
    library = table.to_table(columns=["sample_id", "embedding"])
    projected = project(model, rna=as_matrix(library["embedding"]))
    n, d = projected.shape
    if kind == "auto":
        kind = "flat" if n <= approximate_above else "hnsw"
    index = build_faiss_index(projected, kind, shards=shards, engine=engine)
    if kind == "ivf":
        recall = tune_nprobe(index, projected)
    else:
        recall = recall_against_exact(index, projected) if kind != "flat" else None
    snapshot = {embedding_table("rna", rna_encoder): store.lance_tables()[embedding_table("rna", rna_encoder)].version}
    version = f"idx_{record.version.removeprefix('align_')}_{kind}_{n}_{build_id()}"
    with store.transaction() as txn:
        folder = txn.stage_artifact(index_artifact(version))
        faiss.write_index(index, str(folder / "index.faiss"))
        (folder / "ids.json").write_text(json.dumps(library["sample_id"].to_pylist()))
        slides = store.dataset(embedding_table("slide", record.params['image_encoder']))
        type_of = cancer_types(store)
        if slides is not None:
            _save_slide_neighbours(store, folder, index, model, library["sample_id"].to_pylist(), projected,
                                   slides.to_table(columns=["sample_id", "embedding"]), type_of)
        vectors_table = pa.table({
            "sample_id": library["sample_id"].cast(pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(projected.reshape(-1)), d),
        })
        txn.write_lance(projected_table("rna", record.version), vectors_table, kind="rna_projected",
                        encoder=record.version, mode="overwrite")
        for level in ("slide", "tile"):
            source = store.dataset(embedding_table(level, record.params['image_encoder']))
            if source is not None:
                txn.write_lance(projected_table(level, record.version),
                                _projected_batches(model, source, level, type_of),
                                kind=f"{level}_projected", encoder=record.version, mode="overwrite")
        txn.insert("index_versions", pa.Table.from_pylist([{
            "version": version, "model_version": record.version, "kind": kind, "path": index_artifact(version),
            "n_vectors": n, "params": json.dumps({"dim": d, "data": snapshot, "shards": shards,
                                                  **({"nprobe": index.nprobe} if kind == "ivf" else {})}),
            "metrics": json.dumps({"recall_vs_exact@10": recall}), "created_at": utcnow(),
        }]))
        txn.move_pointer(Pointer.CURRENT_INDEX, version)
    return IndexReport(version, record.version, kind, n, d, recall, gpu_count() > 0, time.perf_counter() - started)


def _save_slide_neighbours(store: Store, folder, index, model, library_ids: list[str], library_vectors: np.ndarray,
                           slides: pa.Table, type_of: dict[str, str | None]) -> None:
    """Each slide's top neighbours in the whole library and among profiles that match it by the default rule."""
    slide_ids = slides["sample_id"].to_pylist()
    queries = np.ascontiguousarray(project(model, image=as_matrix(slides["embedding"]),
                                           cancer_types=[type_of[s] for s in slide_ids]), dtype=np.float32)
    metadata = SampleMetadata.load(store, DEFAULT_MATCH)
    patients = np.array([metadata.patient[s] for s in library_ids])
    width = min(len(library_ids), NEIGHBOURS_CACHED + most_profiles_per_patient(patients))
    similarities, positions = index.search(queries, width)
    plan = plan_neighbours([metadata.values.get(s) for s in slide_ids], [metadata.values[s] for s in library_ids],
                           patients, 1, columns=DEFAULT_MATCH)
    matched = np.full((len(slide_ids), width), -1, np.int32)
    matched_sims = np.full((len(slide_ids), width), -np.inf, np.float32)
    for g, rows in enumerate(plan.groups[1:], start=1):
        at = np.flatnonzero(plan.group_of == g)
        n = min(len(rows), NEIGHBOURS_CACHED + most_profiles_per_patient(patients[rows]))
        found, sims = nearest_within(library_vectors, rows, queries[at], n)
        matched[at[:, None], np.arange(n)], matched_sims[at[:, None], np.arange(n)] = found, sims
    np.savez(folder / "slide_neighbours.npz", sample_ids=np.array(slide_ids), positions=positions.astype(np.int32),
             similarities=similarities, matched_on=np.array(DEFAULT_MATCH), matched_positions=matched,
             matched_similarities=matched_sims)


def _projected_batches(model, dataset, level: str, type_of: dict[str, str | None], batch_size: int = 8192
                       ) -> pa.RecordBatchReader:
    """Slide or tile embeddings through the image head (a tile with its slide's type), streamed, so prompts
    need no torch."""

    keys = ["sample_id"] + (["tile_index"] if level == "tile" else [])
    dim = model.image_head.net[-1].out_features
    schema = pa.schema([pa.field("sample_id", pa.string())]
                       + ([pa.field("tile_index", pa.int32())] if level == "tile" else [])
                       + [pa.field("vector", pa.list_(pa.float32(), dim))])

    def batches():
        for batch in dataset.to_batches(columns=keys + ["embedding"], batch_size=batch_size):
            projected = project(model, image=as_matrix(batch["embedding"]),
                                cancer_types=[type_of[s] for s in batch["sample_id"].to_pylist()])
            columns = [batch[k].cast(schema.field(k).type) for k in keys]
            yield pa.RecordBatch.from_arrays(
                columns + [pa.FixedSizeListArray.from_arrays(pa.array(projected.reshape(-1)), dim)], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())
