"""Ingest a cohort: manifest + expression + slides into a store, all or nothing.

Everything that can be checked before writing is checked first (manifest,
expression values, slide files, feature dimensions, conflicts with stored
samples). Writing then happens in one :class:`~hquery.store.Transaction`: an
error or a killed process part-way leaves the store exactly as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from hquery.errors import InputError
from hquery.ingest.distributed import stage_key, stage_slides
from hquery.ingest.embed import Progress, adapter_dir, commit_staged_slides, embed_slides, no_progress
from hquery.ingest.expression import ExpressionMatrix, read_expression
from hquery.ingest.image_encoders import (
    DEFAULT_IMAGE_ENCODER,
    ImageEncoderSpec,
    encoder_tiling,
    parse_image_encoder,
)
from hquery.ingest.manifest import ManifestRow, read_manifest
from hquery.ingest.rna_encoders import DEFAULT_RNA_ENCODER, create_rna_encoder, load_rna_encoder
from hquery.ingest.slides import SlideSource, TilingOptions, open_slide
from hquery.names import (
    EXPRESSION,
    SPOT_EXPRESSION,
    Pointer,
    embedding_table,
    encoder_artifact,
    file_safe,
    qc_artifact,
)
from hquery.parallel import RayOptions
from hquery.store import Store, Transaction, utcnow, vector_table, vectors

__all__ = ["IngestReport", "ingest_cohort"]

@dataclasses.dataclass
class IngestReport:
    """What one ingest did."""

    cohort: str
    ingest_id: str | None
    n_new: int
    n_same: int
    n_pairs: int = 0
    n_reference: int = 0
    n_query: int = 0
    n_tiles: int = 0
    genes_matched: int | None = None
    genes_dropped: int | None = None
    image_encoder: str | None = None
    rna_encoder: str | None = None
    seconds: float = 0.0
    encode_seconds: float = 0.0
    engine: str = "local"
    n_resumed: int = 0
    """Slides a killed earlier run of this ingest had finished (Ray engine), not encoded again."""
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    """Samples left out because their slide failed (``skip_bad_slides``), with the error."""
    notes: list[str] = dataclasses.field(default_factory=list)
    """What was assumed, and should be checked (a resolution read from the objective power, say)."""

    def summary(self) -> str:
        if self.n_new == 0:
            return f"{self.cohort}: nothing new ({self.n_same} samples already stored, unchanged)"
        parts = [
            f"{self.cohort}: {self.n_new} new samples ({self.n_pairs} pairs, {self.n_reference} reference, "
            f"{self.n_query} query slides)",
        ]
        if self.n_same:
            parts.append(f"{self.n_same} unchanged skipped")
        if self.n_tiles:
            rate = self.n_tiles / self.encode_seconds if self.encode_seconds else float("nan")
            where = " on Ray" if self.engine == "ray" else ""
            parts.append(f"{self.n_tiles} tiles embedded with {self.image_encoder}{where} ({rate:.0f} tiles/s)")
        if self.n_resumed:
            parts.append(f"{self.n_resumed} slides resumed from an interrupted run")
        if self.genes_matched is not None:
            parts.append(f"{self.genes_matched} genes matched, {self.genes_dropped} not in the universe dropped")
        parts.append(f"{self.seconds:.1f}s")
        skipped = "".join(f"\nskipped {sid}: {error}" for sid, error in self.skipped.items())
        return "; ".join(parts) + skipped + "".join(f"\nnote: {note}" for note in self.notes)


def ingest_cohort(
    store: Store,
    manifest: str | Path,
    *,
    expression: str | Path | None = None,
    spots: str | Path | None = None,
    name: str | None = None,
    encoder: str | None = None,
    rna_encoder: str | None = None,
    units: str = "counts",
    tiling: TilingOptions | None = None,
    stain: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    engine: RayOptions | None = None,
    skip_bad_slides: bool = False,
    progress: Progress = no_progress,
    allow_outside_paths: bool = False,
) -> IngestReport:
    """Ingest a cohort manifest (and its expression) into ``store``.

    Parameters
    ----------
    store
        An open :class:`~hquery.store.Store`.
    manifest
        Cohort CSV: ``sample_id``, ``patient_id`` required; ``cancer_type``,
        ``slide_path`` and ``mpp`` (a slide's µm per pixel) optional; other columns
        are kept as clinical metadata.
    expression
        Bulk expression, samples as rows (CSV, TSV, gz, parquet, h5ad).
    spots
        Tile-level expression with ``sample_id, x, y`` then genes.
    name
        Cohort name; defaults to the manifest's file stem (its folder's name for a
        generic ``manifest.csv``, see :func:`cohort_name`).
    encoder, rna_encoder
        Image and RNA encoder specs; default to the store's current ones (the
        first ingest's image encoder: ``he-features``).
    stain
        ``macenko`` or ``reinhard`` stain-normalises each tile before it is embedded
        (:mod:`hquery.ingest.stain`), ``none`` embeds tiles as they are; it becomes
        part of the encoder's version. Default: as the encoder spec says.
    tiling
        How whole-slide images are tiled; settings left ``None`` come from the image
        encoder (a foundation model's tile size and µm/px), else 224 px at 20x.
    units
        ``counts`` (to log1p CPM), ``tpm`` (to log1p) or ``log``.
    device
        Where the image encoder runs: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
    engine
        ``None`` encodes in this process; :class:`~hquery.ingest.distributed.RayOptions`
        encodes on Ray workers, staging each finished slide so that the same
        ingest, killed and run again, encodes only the slides left. Either way the
        store changes in one commit at the end.
    skip_bad_slides
        Leave out the samples whose slide cannot be opened, checked or (on Ray)
        encoded, naming each in :attr:`IngestReport.skipped` and the ingest's
        record, instead of refusing the ingest.
    allow_outside_paths
        Let ``slide_path`` name slides outside the manifest's folder (refused by default).

    Returns
    -------
    IngestReport
        Counts, encoders used and timings. Re-running an ingest whose samples are
        all stored unchanged returns ``n_new == 0`` and writes nothing.

    Examples
    --------
    >>> report = ingest_cohort(store, manifest, expression=expression, encoder=TINY_VIT)
    >>> report.n_new, report.n_pairs
    (36, 30)
    >>> ingest_cohort(store, manifest, expression=expression).n_new
    0
    """
    started = time.perf_counter()
    started_at = utcnow()
    manifest = Path(manifest)
    if name is not None and not name.strip():
        raise InputError("a cohort name cannot be blank; give a name or leave it out (the manifest names it)")
    cohort = name or cohort_name(manifest)
    rows = read_manifest(manifest, allow_outside_paths=allow_outside_paths)
    by_id = {r.sample_id: r for r in rows}
    aliases = {r.alias: r.symbol for r in store.query("gene_aliases")}

    bulk = read_expression(expression, units, aliases) if expression else None
    if bulk is not None:
        _check_known(bulk.sample_ids, by_id, bulk.source, manifest)
    spot = read_expression(spots, units, aliases, spots=True) if spots else None
    if spot is not None:
        _check_known(spot.sample_ids, by_id, spot.source, manifest)

    tiling = (tiling or TilingOptions()).with_defaults(
        **encoder_tiling(encoder or store.pointer(Pointer.IMAGE_ENCODER_SPEC)))
    sources: dict[str, SlideSource] = {}
    skipped: dict[str, str] = {}
    for row in rows:
        if row.slide_path is not None:
            try:
                sources[row.sample_id] = open_slide(row.slide_path, tiling, row.mpp)
            except InputError as exc:
                if not skip_bad_slides:
                    raise InputError(f"{row.where(manifest)}: {exc}") from exc
                skipped[row.sample_id] = str(exc)
    if skipped:
        rows = [r for r in rows if r.sample_id not in skipped]
    if spot is not None:
        for sid in set(spot.sample_ids) - set(sources) - set(skipped):
            raise InputError(f"{spot.source}: spots for sample {sid}, which has no slide_path in {manifest}")

    universe = [r.symbol for r in store.query("gene_universe")]
    new_universe = not universe and bulk is not None
    if new_universe:
        universe = sorted(bulk.genes)
    bulk_values = matched = dropped = None
    if bulk is not None:
        bulk_values, matched, dropped = bulk.align(universe)
    elif spot is not None and not universe:
        raise InputError(f"{spot.source}: spot expression needs a gene universe; ingest bulk expression first")
    spot_values = spot.align(universe)[0] if spot is not None else None

    image_spec = _image_spec(store, encoder, sources, manifest, rows)
    if stain is not None and image_spec is not None and image_spec.runs_model:
        image_spec = image_spec.with_stain(stain)

    bulk_rows = {sid: i for i, sid in enumerate(bulk.sample_ids)} if bulk else {}
    spot_rows: dict[str, list[int]] = {}
    if spot is not None:
        for i, sid in enumerate(spot.sample_ids):
            spot_rows.setdefault(sid, []).append(i)

    stored = {r.sample_id: r for r in store.query("sample_hashes")}
    new_rows: list[ManifestRow] = []
    hashes: dict[str, str] = {}
    for row in rows:
        digest = _content_hash(
            row,
            sources.get(row.sample_id),
            bulk_values[bulk_rows[row.sample_id]] if row.sample_id in bulk_rows else None,
            spot_values[spot_rows[row.sample_id]] if row.sample_id in spot_rows else None,
        )
        prior = stored.get(row.sample_id)
        if prior is None and row.slide_path is None and row.sample_id not in bulk_rows:
            raise InputError(f"{row.where(manifest)}: has neither a slide_path nor a profile in "
                             f"{bulk.source if bulk else 'an expression file (--expression)'}; a sample needs one")
        if prior is None:
            new_rows.append(row)
            hashes[row.sample_id] = digest
        elif prior.content_hash != digest:
            raise InputError(
                f"{row.where(manifest)}: sample {row.sample_id} is already stored (ingest {prior.ingest_id}) with "
                f"different content; stored samples are never overwritten, so give the changed sample a new sample_id"
            )
    for row in new_rows:
        if row.sample_id in sources:
            try:
                sources[row.sample_id].check()
            except InputError as exc:
                if not skip_bad_slides:
                    raise InputError(f"{row.where(manifest)}: {exc}") from exc
                skipped[row.sample_id] = str(exc)
    new_rows = [r for r in new_rows if r.sample_id not in skipped]
    report = IngestReport(cohort=cohort, ingest_id=None, n_new=len(new_rows), n_same=len(rows) - len(new_rows),
                          engine="ray" if engine is not None else "local", skipped=skipped)
    report.notes = [f"{r.sample_id}: {sources[r.sample_id].path} records no µm/px; "
                    f"{sources[r.sample_id].source_mpp:g} µm/px assumed from its "
                    f"{sources[r.sample_id].resolution_from} (give mpp if that is wrong)"
                    for r in new_rows if r.sample_id in sources
                    and (sources[r.sample_id].resolution_from or "").startswith("objective power")]
    report.notes += [f"{matrix.source}: columns {', '.join(columns)} name one gene, {symbol}: their values were "
                     f"summed" for matrix in (bulk, spot) if matrix is not None
                     for symbol, columns in list(matrix.merged.items())[:5]]
    if not new_rows:
        report.seconds = time.perf_counter() - started
        return report

    with contextlib.ExitStack() as staging:
        staged = stage = None
        if engine is not None and image_spec is not None:
            stage = staging.enter_context(store.stage(stage_key(cohort, str(manifest.resolve()),
                                                                image_spec.version)).lock())
            slides = [(r.sample_id, sources[r.sample_id]) for r in new_rows if r.sample_id in sources]
            staged = stage_slides(stage, image_spec, slides, engine, batch_size=batch_size, device=device,
                                  adapter_dir=adapter_dir(store, image_spec.adapter), skip_bad_slides=skip_bad_slides,
                                  progress=progress)
            report.skipped.update(staged.failed)
            report.n_resumed = staged.n_resumed
            new_rows = [r for r in new_rows if r.sample_id not in staged.failed]
            report.n_new = len(new_rows)
            if not new_rows:
                report.seconds = time.perf_counter() - started
                return report
        new_ids = [r.sample_id for r in new_rows]
        with store.transaction() as txn:
            raced = sorted(set(new_ids) & {r.sample_id for r in store.query("sample_hashes")})
            if raced:
                raise InputError(f"{manifest}: sample(s) {', '.join(raced[:5])} were stored by another ingest "
                                 f"while this one was reading its input; run it again")
            report.ingest_id = f"ingest_{started_at:%Y%m%d_%H%M%S}_{txn.id[:6]}"
            txn.execute("upsert_cohort", [cohort, str(manifest.resolve())])
            new_bulk = [sid for sid in new_ids if sid in bulk_rows]
            if new_bulk:
                if new_universe:
                    txn.insert("genes", pa.table({"position": pa.array(range(len(universe)), pa.int32()),
                                                  "symbol": pa.array(universe, pa.string())}))
                values = bulk_values[[bulk_rows[s] for s in new_bulk]]
                txn.write_lance(EXPRESSION, vector_table({"sample_id": new_bulk}, values), kind="expression")
                new_spots = (spot_values[[i for s in new_ids for i in spot_rows.get(s, [])]]
                             if spot_values is not None else None)
                report.rna_encoder = _embed_rna(store, txn, rna_encoder, new_bulk, values, set(sources), new_spots)
            report.genes_matched, report.genes_dropped = matched, dropped

            tiles_table = _tiles_table({sid: sources[sid] for sid in new_ids if sid in sources})
            if spot is not None:
                _write_spots(txn, spot, spot_values, [s for s in new_ids if s in spot_rows], spot_rows, sources)
            new_sources = [(sid, sources[sid]) for sid in new_ids if sid in sources]
            if new_sources and staged is not None:
                report.n_tiles = commit_staged_slides(store, txn, image_spec, new_sources, staged, stage,
                                                      encoder is not None)
                report.encode_seconds = staged.encode_seconds
                report.image_encoder = image_spec.version
            elif new_sources:
                t0 = time.perf_counter()
                report.n_tiles = embed_slides(store, txn, image_spec, new_sources, batch_size, device, progress,
                                              encoder is not None)
                report.encode_seconds = time.perf_counter() - t0
                report.image_encoder = image_spec.version
            txn.insert("tiles", tiles_table)
            txn.insert("slides", _slides_table(new_sources, report.ingest_id))
            wsis = [(sid, source) for sid, source in new_sources if source.kind == "wsi"]
            if wsis:
                folder = txn.stage_artifact(qc_artifact(report.ingest_id))
                for sid, source in wsis:
                    source.draw_tiles(folder / f"{file_safe(sid)}.png")
            txn.insert("samples", _samples_table(new_rows, cohort, sources, bulk_rows, hashes, report.ingest_id))
            report.n_pairs = sum(1 for s in new_ids if s in sources and s in bulk_rows)
            report.n_reference = sum(1 for s in new_ids if s not in sources and s in bulk_rows)
            report.n_query = sum(1 for s in new_ids if s in sources and s not in bulk_rows)
            report.seconds = time.perf_counter() - started
            txn.insert("ingests", pa.Table.from_pylist([{
                "ingest_id": report.ingest_id, "cohort": cohort, "manifest_path": str(manifest.resolve()),
                "expression_path": str(Path(expression).resolve()) if expression else None,
                "spots_path": str(Path(spots).resolve()) if spots else None, "units": units,
                "image_encoder": report.image_encoder, "rna_encoder": report.rna_encoder,
                "n_samples_new": report.n_new, "n_samples_same": report.n_same, "n_tiles": report.n_tiles,
                "genes_matched": matched, "genes_dropped": dropped,
                "lance_versions": json.dumps(txn.lance_versions), "started_at": started_at, "finished_at": utcnow(),
                "engine": report.engine, "n_slides_resumed": report.n_resumed,
                "skipped": json.dumps(report.skipped) if report.skipped else None,
            }]))
    return report


# ---------------------------------------------------------------------------- checks


def _check_known(sample_ids: list[str], by_id: dict[str, ManifestRow], source: Path, manifest: Path) -> None:
    unknown = sorted(set(sample_ids) - set(by_id))
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InputError(f"{source}: sample(s) {', '.join(unknown[:5])}{more} are not in the manifest {manifest}")


GENERIC_MANIFEST_NAMES = ("manifest", "cohort", "samples", "metadata", "sample_sheet")


def cohort_name(manifest: Path) -> str:
    """The default cohort name: the manifest's file name, or its folder's where the file name says nothing
    (``lab_a/manifest.csv`` is cohort ``lab_a``, not ``manifest``)."""
    stem = manifest.stem
    if stem.lower() in GENERIC_MANIFEST_NAMES and manifest.resolve().parent.name:
        return manifest.resolve().parent.name
    return stem


def _image_spec(
    store: Store, encoder: str | None, sources: dict[str, SlideSource], manifest: Path, rows: list[ManifestRow]
) -> ImageEncoderSpec | None:
    if not sources:
        return None
    kinds = {sid: s.kind for sid, s in sources.items()}
    features = [sid for sid, k in kinds.items() if k == "features"]
    images = [sid for sid, k in kinds.items() if k != "features"]
    if features and images:
        raise InputError(
            f"{manifest}: mixes precomputed features (sample {features[0]}) with images (sample {images[0]}); "
            f"ingest them as separate cohorts, since each lands in its encoder's tables"
        )
    default = store.pointer(Pointer.IMAGE_ENCODER_SPEC)
    if features:
        dims = {sid: sources[sid].dim for sid in features}
        spec_text = encoder or (default if default and default.startswith("precomputed:") else None)
        if spec_text is None:
            spec_text = f"precomputed:features_d{next(iter(dims.values()))}"
        spec = parse_image_encoder(spec_text)
        if spec.source != "precomputed":
            raise InputError(f"{manifest}: slides are precomputed .h5 features, so the image encoder must be precomputed:NAME")
        stored = store.query("encoder", [spec.version])
        expected = stored[0].dim if stored else next(iter(dims.values()))
        for row in rows:
            if row.sample_id in dims and dims[row.sample_id] != expected:
                raise InputError(
                    f"{row.where(manifest)}: features file {sources[row.sample_id].path} has dimension "
                    f"{dims[row.sample_id]}, expected {expected} for encoder {spec.text}"
                )
        return spec
    spec = parse_image_encoder(encoder or (default if default and not default.startswith("precomputed:") else DEFAULT_IMAGE_ENCODER))
    if not spec.runs_model:
        raise InputError(f"{manifest}: slides are images, but encoder {spec.text} only reads precomputed features")
    return spec


def _content_hash(row: ManifestRow, source: SlideSource | None, bulk: np.ndarray | None, spots: np.ndarray | None) -> str:
    h = hashlib.blake2b(digest_size=16)
    meta = {"patient": row.patient_id, "cancer_type": row.cancer_type, "clinical": row.clinical}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    h.update((source.content_hash if source else "no-slide").encode())
    for block in (bulk, spots):
        h.update(b"|" if block is None else np.ascontiguousarray(block).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- tables


def _tiles_table(sources: dict[str, SlideSource]) -> pa.Table:
    sids, idx, xs, ys = [], [], [], []
    for sid, src in sources.items():
        sids += [sid] * src.n_tiles
        idx.append(np.arange(src.n_tiles, dtype=np.int32))
        xs.append(src.coords[:, 0])
        ys.append(src.coords[:, 1])
    if not sids:
        return pa.table({"sample_id": pa.array([], pa.string())})
    return pa.table({
        "sample_id": pa.array(sids, pa.string()),
        "tile_index": pa.array(np.concatenate(idx)),
        "x": pa.array(np.concatenate(xs)),
        "y": pa.array(np.concatenate(ys)),
    })


def _slides_table(sources: list[tuple[str, SlideSource]], ingest_id: str) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "sample_id": sid, "source_path": str(s.path), "source_kind": s.kind, "content_hash": s.content_hash,
                "width": s.width, "height": s.height, "tile_size": s.tile_size, "magnification": s.magnification,
                "mpp": s.mpp, "source_mpp": s.source_mpp, "resolution_from": s.resolution_from,
                "n_tiles": s.n_tiles, "ingest_id": ingest_id,
            }
            for sid, s in sources
        ]
    )


def _samples_table(rows, cohort, sources, bulk_rows, hashes, ingest_id) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "sample_id": r.sample_id, "patient_id": r.patient_id, "cohort": cohort, "cancer_type": r.cancer_type,
                "has_slide": r.sample_id in sources, "has_expression": r.sample_id in bulk_rows,
                "clinical": json.dumps(r.clinical, default=str), "content_hash": hashes[r.sample_id],
                "ingest_id": ingest_id,
            }
            for r in rows
        ]
    )


def _write_spots(txn: Transaction, spot: ExpressionMatrix, values: np.ndarray, sample_ids: list[str],
                 spot_rows: dict[str, list[int]], sources: dict[str, SlideSource]) -> None:
    order, tile_idx = [], []
    for sid in sample_ids:
        grid = {(int(x), int(y)): i for i, (x, y) in enumerate(sources[sid].coords)}
        for r in spot_rows[sid]:
            x, y = (int(v) for v in spot.coords[r])
            if (x, y) not in grid:
                raise InputError(f"{spot.source}: spot of sample {sid} at x={x}, y={y} matches no tile of its slide")
            order.append(r)
            tile_idx.append(grid[(x, y)])
    if not order:
        return
    table = vector_table({"sample_id": [spot.sample_ids[r] for r in order]}, values[order])
    table = table.add_column(1, "tile_index", pa.array(tile_idx, pa.int32()))
    table = table.add_column(2, "x", pa.array(spot.coords[order, 0]))
    table = table.add_column(3, "y", pa.array(spot.coords[order, 1]))
    txn.write_lance(SPOT_EXPRESSION, table, kind=SPOT_EXPRESSION)


# ---------------------------------------------------------------------------- encoders


def _embed_rna(store: Store, txn: Transaction, requested: str | None, new_ids: list[str], new_values: np.ndarray,
               with_slide: set[str], new_spots: np.ndarray | None = None) -> str:
    """Embed new profiles with the current RNA encoder, fitting a new one when none exists or another is asked for.

    A new encoder is fitted on the reference library (expression-only samples,
    stored and new) when it has at least three profiles, else on every profile,
    and then re-embeds every stored profile into its own table. A store's first
    spatial section brings one bulk profile but many spots: with fewer than three
    profiles, the new spot profiles join the fit (its params say ``fit_on``).
    """
    current = store.pointer(Pointer.RNA_ENCODER)
    row = store.query("encoder", [current])[0] if current else None
    if row is not None and (requested is None or requested == row.spec):
        enc = load_rna_encoder(json.loads(row.params)["name"], store.artifact_path(row.artifact_path))
        table = vector_table({"sample_id": new_ids}, enc.encode(new_values), "embedding")
        txn.write_lance(embedding_table("rna", current), table, kind="rna_embeddings", encoder=current)
        return current
    spec = requested or DEFAULT_RNA_ENCODER
    ids, values = list(new_ids), new_values
    stored = store.dataset(EXPRESSION)
    if stored is not None:
        table = stored.to_table()
        ids = table["sample_id"].to_pylist() + ids
        values = np.concatenate([vectors(table["values"]), values])
    with_slide = with_slide | {r.sample_id for r in store.query("sample_hashes") if r.has_slide}
    reference = np.array([s not in with_slide for s in ids])
    enc = create_rna_encoder(spec)
    fit_on, what = (values[reference], "reference profiles") if reference.sum() >= 3 else (values, "profiles")
    if len(fit_on) < 3 and new_spots is not None and len(new_spots):
        fit_on, what = np.concatenate([fit_on, new_spots]), "profiles and spots"
    if len(fit_on) < 3:
        raise InputError(f"the RNA encoder is fitted on the store's first expression profiles, and this ingest "
                         f"brings {len(fit_on)}; ingest at least 3 profiles (a reference library, or a section's "
                         f"spots with --spots) before or with these")
    enc.fit(fit_on)
    version = enc.version
    if not store.query("encoder", [version]):  # the version is the fitted content's hash: stored once
        enc.save(txn.stage_artifact(encoder_artifact(version)))
        txn.insert("encoders", pa.Table.from_pylist([{
            "version": version, "kind": "rna", "spec": spec,
            "params": json.dumps({"name": enc.name, **enc.params, "fit_on": what}),
            "dim": enc.dim, "artifact_path": encoder_artifact(version), "created_at": utcnow(),
        }]))
    table = vector_table({"sample_id": ids}, enc.encode(values), "embedding")
    txn.write_lance(embedding_table("rna", version), table, kind="rna_embeddings", encoder=version, mode="overwrite")
    txn.move_pointer(Pointer.RNA_ENCODER, version)
    return version
