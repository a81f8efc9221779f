"""Slide embeddings: tiles through an image encoder into Lance, and the stored slides again with a PEKA adapter.

:func:`embed_slides` streams tile embeddings into a transaction (bounded memory)
and writes each slide's mean; :func:`reembed_slides` reopens every stored slide
and embeds it with the backbone plus an adapter, into new tables.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from hquery.errors import InputError, NotReadyError, StoreError
from hquery.ingest.distributed import StagedSlides, stage_key, stage_slides
from hquery.ingest.encode import tile_batch, tile_embeddings, tile_schema
from hquery.ingest.image_encoders import ImageEncoderSpec, create_image_encoder, parse_image_encoder
from hquery.ingest.slides import SlideSource, reopen_slide
from hquery.names import Pointer, embedding_table
from hquery.parallel import RayOptions
from hquery.records import model_record
from hquery.store import Stage, Store, Transaction, utcnow, vector_table

Progress = Callable[[str, int], Callable[[int], None]]
"""``progress(description, total)`` returns an ``advance(n)`` callback."""


PREFETCH = 2
"""Tile batches read ahead while a GPU encodes. On the CPU the reader would take cores from the encoder:
``benchmarks/encode_floor.py`` measures the loop at 0.96x its floor reading in turn, and no better ahead."""


def no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def embed_slides(store: Store, txn: Transaction, spec: ImageEncoderSpec, sources: list[tuple[str, SlideSource]],
                  batch_size: int, device: str, progress: Progress, explicit: bool) -> int:
    """Stream tile embeddings into Lance (bounded memory) and write each slide's mean embedding."""
    if spec.runs_model:
        encoder = create_image_encoder(spec, device=device, adapter_dir=adapter_dir(store, spec.adapter))
        dim, params = encoder.dim, encoder.params
    else:
        encoder = None
        dim, params = sources[0][1].dim, {"spec": spec.text}
    total = sum(s.n_tiles for _, s in sources)
    advance = progress(f"embedding {total} tiles ({spec.version})", total)
    sums: dict[str, np.ndarray] = {}
    schema = tile_schema(dim)
    failures: list[BaseException] = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            on_gpu = getattr(getattr(encoder, "device", None), "type", "cpu") == "cuda"
            for sid, ids, coords, emb in tile_embeddings(sources, encoder, batch_size, PREFETCH if on_gpu else 0):
                sums[sid] = sums.get(sid, 0.0) + emb.astype(np.float64).sum(axis=0)
                advance(len(ids))
                yield tile_batch(schema, sid, ids, coords, emb)
        except BaseException as exc:
            failures.append(exc)
            raise

    try:
        txn.write_lance(embedding_table("tile", spec.version), pa.RecordBatchReader.from_batches(schema, batches()),
                        kind="tile_embeddings", encoder=spec.version)
    except Exception:
        if failures:  # Lance wraps errors raised while it pulls batches; surface the original one
            raise failures[0] from None
        raise
    _record_slides(store, txn, spec, dim, params, sources, sums, explicit)
    return total


def commit_staged_slides(store: Store, txn: Transaction, spec: ImageEncoderSpec,
                         sources: list[tuple[str, SlideSource]], staged: StagedSlides, stage: Stage,
                         explicit: bool) -> int:
    """The Ray engine's counterpart of :func:`embed_slides`: link the slides' staged fragments into the tile table
    (in ``sources`` order, as the local path writes them) and write each slide's mean embedding."""
    fragments = [f for sid, _ in sources for f in staged.records[sid]["fragments"]]
    txn.append_fragments(embedding_table("tile", spec.version), fragments, tile_schema(staged.dim), stage,
                         kind="tile_embeddings", encoder=spec.version)
    _record_slides(store, txn, spec, staged.dim, staged.params, sources, staged.sums(), explicit)
    return sum(s.n_tiles for _, s in sources)


def _record_slides(store: Store, txn: Transaction, spec: ImageEncoderSpec, dim: int, params: dict,
                   sources: list[tuple[str, SlideSource]], sums: dict[str, np.ndarray], explicit: bool) -> None:
    """Each slide's mean embedding, the encoder's row and (for the first or an asked-for encoder) the pointers."""
    version = spec.version
    means = np.stack([sums[sid] / s.n_tiles for sid, s in sources])
    slide_table = vector_table({"sample_id": [sid for sid, _ in sources]}, means, "embedding")
    slide_table = slide_table.add_column(1, "n_tiles", pa.array([s.n_tiles for _, s in sources], pa.int32()))
    txn.write_lance(embedding_table("slide", version), slide_table, kind="slide_embeddings", encoder=version)
    if not store.query("encoder", [version]):
        txn.insert("encoders", pa.Table.from_pylist([{
            "version": version, "kind": "image", "spec": spec.text, "params": json.dumps(params), "dim": dim,
            "artifact_path": None, "created_at": utcnow(),
        }]))
    if explicit or store.pointer(Pointer.IMAGE_ENCODER) is None:
        txn.move_pointer(Pointer.IMAGE_ENCODER, version)
        txn.move_pointer(Pointer.IMAGE_ENCODER_SPEC, spec.text)


def adapter_dir(store: Store, adapter: str | None) -> Path | None:
    """The peft folder of PEKA ``adapter``, or ``None`` for the frozen backbone."""
    if not adapter:
        return None
    try:
        return model_record(store, "peka", adapter).folder(store) / "adapter"
    except StoreError as exc:
        raise NotReadyError(f"no PEKA adapter {adapter!r} in the store; train one first", needs="train peka") from exc


@dataclasses.dataclass
class ReembedReport:
    image_encoder: str
    adapter: str | None
    n_slides: int
    n_skipped: int
    n_tiles: int
    seconds: float

    def summary(self) -> str:
        if not self.n_slides:
            return f"every slide is already embedded with {self.image_encoder}; now the current image encoder"
        return (f"re-embedded {self.n_slides} slides ({self.n_tiles} tiles) with {self.image_encoder} in "
                f"{self.seconds:.1f}s; {self.n_skipped} already there; now the current image encoder")


def reembed_slides(store: Store, adapter: str | None = None, *, batch_size: int = 64, device: str = "auto",
                   engine: RayOptions | None = None, progress: Progress = no_progress) -> ReembedReport:
    """Embed every stored slide again with the store's backbone plus PEKA ``adapter``, into new tables.

    The frozen embeddings are never touched: the adapted ones land in
    ``tile_embeddings__<version>`` and ``slide_embeddings__<version>`` of an
    encoder version that names the adapter, which becomes the current image
    encoder (train the alignment again afterwards). It is one transaction: a
    failed or killed run leaves nothing behind. Slides already embedded with that
    version are skipped, so running it again after an ingest embeds only the new ones.

    Parameters
    ----------
    adapter
        A PEKA model version; default: the store's current one (``hquery train peka``).
        ``None`` with no current adapter is an error.
    engine
        Embed on Ray (:mod:`hquery.ingest.distributed`) instead of in this process;
        its finished slides are staged, so a killed run resumes where it stopped.
    """

    started = time.perf_counter()
    adapter = adapter or store.pointer(Pointer.PEKA_ADAPTER)
    if not adapter:
        raise NotReadyError("no PEKA adapter to re-embed with; train one first", needs="train peka")
    if not store.pointer(Pointer.IMAGE_ENCODER_SPEC):
        raise InputError("the store has no slides to re-embed")
    adapter_dir(store, adapter)
    spec = parse_image_encoder(model_record(store, "peka", adapter).params["base_encoder"]).with_adapter(adapter)
    done = set()
    existing = store.dataset(embedding_table("slide", spec.version))
    if existing is not None:
        done = set(existing.to_table(columns=["sample_id"])["sample_id"].to_pylist())
    todo = [r.sample_id for r in store.query("slide_samples") if r.sample_id not in done]
    with store.reading():
        sources = [(sid, reopen_slide(store, sid)) for sid in todo]
    n_tiles = 0
    if sources and engine is not None:
        with store.stage(stage_key("reembed", spec.version)).lock() as stage:
            staged = stage_slides(stage, spec, sources, engine, batch_size=batch_size, device=device,
                                  adapter_dir=adapter_dir(store, adapter), progress=progress)
            with store.transaction() as txn:
                n_tiles = commit_staged_slides(store, txn, spec, sources, staged, stage, explicit=True)
        return ReembedReport(spec.version, adapter, len(sources), len(done), n_tiles, time.perf_counter() - started)
    with store.transaction() as txn:
        if sources:
            n_tiles = embed_slides(store, txn, spec, sources, batch_size, device, progress, explicit=True)
        else:
            txn.move_pointer(Pointer.IMAGE_ENCODER, spec.version)
            txn.move_pointer(Pointer.IMAGE_ENCODER_SPEC, spec.text)
    return ReembedReport(spec.version, adapter, len(sources), len(done), n_tiles, time.perf_counter() - started)
