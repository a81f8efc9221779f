"""Slides embedded on a Ray cluster, staged slide by slide so that a killed ingest resumes.

The driver plans (manifest, hashes, tile grids: :mod:`hquery.ingest.cohort`);
each Ray actor loads the image encoder once, then reads, tiles and encodes whole
slides and writes their tile embeddings as Lance fragments into the run's
:class:`~hquery.store.Stage` with lance-ray's fragment writer. The driver records
each finished slide in the stage as its result arrives. Nothing is visible to
readers until the ingest's one transaction links every staged fragment into the
tables (:meth:`~hquery.store.Transaction.append_fragments`), so the store
changes all at once, as on the local path; run again after a kill, the slides
already staged are not encoded again.

Ray is an optional extra (``pip install 'hquery[ray]'``), imported only when
a Ray engine is asked for (:func:`hquery.parallel.ray_session`). Workers on other machines must see the store
at the same path (a shared file system) and have hquery installed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from hquery.errors import InputError
from hquery.ingest.encode import tile_batch, tile_embeddings, tile_schema
from hquery.ingest.image_encoders import ImageEncoderSpec, create_image_encoder, parse_image_encoder
from hquery.ingest.slides import SlideSource
from hquery.parallel import RayOptions, ray_session
from hquery.store import Stage, content_digest, kill_point

__all__ = ["StagedSlides", "stage_key", "stage_slides"]


@dataclasses.dataclass
class StagedSlides:
    """What a staged run holds: each finished slide's fragments and embedding sum, and the slides that failed."""

    records: dict[str, dict]
    """By sample id: ``fragments`` (Lance ``FragmentMetadata`` JSON), ``sum``, ``n_tiles``, ``dim``, ``params``."""
    failed: dict[str, str]
    """Sample id to the error that stopped its slide (only with ``skip_bad_slides``)."""
    n_resumed: int
    """Slides found finished in the stage from an earlier run."""
    n_encoded: int
    n_tiles_encoded: int
    encode_seconds: float

    def sums(self) -> dict[str, np.ndarray]:
        return {sid: np.asarray(r["sum"], dtype=np.float64) for sid, r in self.records.items()}

    @property
    def dim(self) -> int:
        return next(iter(self.records.values()))["dim"]

    @property
    def params(self) -> dict:
        return next(iter(self.records.values()))["params"]


def stage_key(*parts) -> str:
    """A stage's key: what the run is (cohort, manifest, encoder version), not when it ran."""
    return "ingest_" + content_digest(list(parts))


class SlideEmbedder:
    """One encoder replica: loads the model once, then embeds whole slides into a stage's fragments.

    A plain class; :func:`stage_slides` makes it a Ray actor.
    """

    def __init__(self, spec_text: str, device: str, adapter_dir: str | None, batch_size: int, fragments_uri: str):
        self.spec = parse_image_encoder(spec_text)
        self.encoder = (create_image_encoder(self.spec, device=device, adapter_dir=adapter_dir)
                        if self.spec.runs_model else None)
        self.batch_size = batch_size
        self.fragments_uri = fragments_uri

    def embed(self, sample_id: str, source: SlideSource) -> dict:
        """Encode one slide and write its fragments; the record of them, or ``{"error": ...}`` naming the slide."""
        from lance_ray.fragment import write_fragment

        started = time.perf_counter()
        dim = self.encoder.dim if self.encoder is not None else source.dim
        params = self.encoder.params if self.encoder is not None else {"spec": self.spec.text}
        schema = tile_schema(dim)
        total = np.zeros(dim, dtype=np.float64)

        def tables() -> Iterator[pa.Table]:
            nonlocal total
            for sid, ids, coords, emb in tile_embeddings([(sample_id, source)], self.encoder, self.batch_size):
                total = total + emb.astype(np.float64).sum(axis=0)
                yield pa.Table.from_batches([tile_batch(schema, sid, ids, coords, emb)])

        try:
            written = write_fragment(tables(), self.fragments_uri, schema=schema)
        except Exception as exc:  # one slide's failure is reported by name; the others go on
            return {"sample_id": sample_id, "error": f"{type(exc).__name__}: {exc}"}
        return {
            "sample_id": sample_id, "content_hash": source.content_hash, "encoder": self.spec.version,
            "fragments": [json.dumps(fragment.to_json()) for fragment, _ in written],
            "sum": total.tolist(), "n_tiles": source.n_tiles, "dim": dim, "params": params,
            "seconds": time.perf_counter() - started,
        }


def stage_slides(
    stage: Stage,
    spec: ImageEncoderSpec,
    sources: list[tuple[str, SlideSource]],
    options: RayOptions,
    *,
    batch_size: int = 64,
    device: str = "auto",
    adapter_dir: Path | None = None,
    skip_bad_slides: bool = False,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> StagedSlides:
    """Embed ``sources`` on Ray into ``stage``, skipping the slides an earlier run of the stage finished.

    The caller holds ``stage.lock()``. A slide that fails does not stop the
    others; once they are staged, the error names every failed slide, or, with
    ``skip_bad_slides``, they are left out and listed in :attr:`StagedSlides.failed`.
    """
    started = time.perf_counter()
    version = spec.version
    staged = {}
    for sid, record in stage.records().items():
        if (record.get("encoder") == version and record.get("fragments") is not None
                and stage.has_files(record["fragments"])):
            staged[sid] = record
    wanted = {sid: src for sid, src in sources}
    done = {sid: r for sid, r in staged.items() if sid in wanted and r["content_hash"] == wanted[sid].content_hash}
    todo = [(sid, src) for sid, src in sources if sid not in done]
    n_resumed = len(done)
    advance = (progress or (lambda d, t: lambda n: None))(
        f"embedding {sum(s.n_tiles for _, s in todo)} tiles of {len(todo)} slides on Ray "
        f"({n_resumed} staged before)", sum(s.n_tiles for _, s in todo))
    failed: dict[str, str] = {}
    n_tiles = 0
    if todo:
        folder = str(adapter_dir) if adapter_dir is not None else None
        for sid, record in _run_on_ray(todo, spec, options, batch_size, device, folder, stage.fragments_uri):
            if "error" in record:
                failed[sid] = record["error"]
                continue
            stage.put_record(sid, record)
            done[sid] = record
            n_tiles += record["n_tiles"]
            advance(record["n_tiles"])
            kill_point("slide-staged")
    if failed and not skip_bad_slides:
        named = "; ".join(f"sample {sid}: slide {wanted[sid].path} failed on a Ray worker: {error}"
                          for sid, error in failed.items())
        raise InputError(f"{named} (the other slides are staged: fix it or pass --skip-bad-slides, then run the "
                         f"same command again)")
    return StagedSlides({sid: done[sid] for sid, _ in sources if sid in done}, failed, n_resumed,
                        len(todo) - len(failed), n_tiles, time.perf_counter() - started)


def _run_on_ray(todo, spec, options, batch_size, device, adapter_dir, fragments_uri) -> Iterator[tuple[str, dict]]:
    """``(sample_id, record)`` as each slide finishes on a pool of :class:`SlideEmbedder` actors."""
    from ray.util import ActorPool

    with ray_session(options) as ray:
        actor = ray.remote(num_cpus=options.worker_cpus(), num_gpus=options.gpus_per_worker)(SlideEmbedder)
        workers = [actor.remote(spec.text, device, adapter_dir, batch_size, fragments_uri)
                   for _ in range(min(options.workers, len(todo)))]
        pool = ActorPool(workers)
        # the biggest slides first, so one large slide does not finish alone at the end
        order = sorted(todo, key=lambda item: -item[1].n_tiles)
        for record in pool.map_unordered(lambda a, item: a.embed.remote(*item), order):
            yield record["sample_id"], record
