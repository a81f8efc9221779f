"""Reclaiming disk: retired model and index versions, superseded Lance versions and orphaned artifacts.

Nothing a store serves is ever deleted by a write: a new model or index is a
new version, an ingest a new Lance version. :func:`collect_garbage` (``hquery
gc``) is the one place that deletes, and only what nothing live needs:

* a model version no pointer names, no unretired index was built on and no
  encoder's spec names (a PEKA adapter behind an embedding table), beyond the
  newest ``keep`` of its kind; with it go its projected Lance tables;
* an index version no pointer names, beyond the newest ``keep``;
* Lance versions older than the committed one, except those a live model was
  trained on (a refresh reads them to know which pairs are new);
* artifact folders no catalog row refers to (left by a killed commit);
* stages of interrupted resumable ingests (:class:`~hquery.store.Stage`) untouched
  for :data:`STAGE_MAX_AGE` (run the ingest again to resume it before then).

A version superseded less than ``grace`` ago stays, so a reader that opened it
a moment before finishes. Retired rows stay in the catalog, marked
``retired_at``: the runs and results that name them keep their provenance.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta

from hquery.store import LanceGarbage, Store, StoreSummary, utcnow

DEFAULT_KEEP = 2
"""Versions of each model kind (and of the index) kept beyond the live ones: the current and the one before."""
DEFAULT_GRACE = timedelta(minutes=10)
COMPACT_FRAGMENTS = 8
"""A Lance table with at least this many fragments (one per append) is compacted."""
STAGE_MAX_AGE = timedelta(days=7)
"""An interrupted ingest's stage is kept this long after its last change, for the same command to resume."""
_PROJECTED = ("slide_projected__", "tile_projected__", "rna_projected__")


@dataclasses.dataclass(frozen=True)
class GarbagePlan:
    """What :func:`collect_garbage` would delete, and how many bytes each part holds."""

    retired_models: list[str]
    retired_indexes: list[str]
    dropped_tables: list[str]
    """Projected Lance tables of the retired models."""
    retired_artifacts: list[str]
    """The retired versions' artifact folders (relative to ``artifacts/``)."""
    orphan_artifacts: list[str]
    lance: list[LanceGarbage]
    stale_stages: list[str]
    """Stages of interrupted ingests older than ``stage_max_age``."""
    bytes: dict[str, int]
    """``versions`` (retired models, indexes and their tables), ``lance`` (superseded Lance versions),
    ``orphans`` (artifact folders nothing refers to), ``stages`` (stale stages)."""

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


@dataclasses.dataclass(frozen=True)
class GarbageReport:
    """What :func:`collect_garbage` did."""

    plan: GarbagePlan
    compacted: dict[str, int]
    """Lance tables compacted, with their new version."""
    size_before: int
    size_after: int
    """Bytes of Lance tables and artifacts before and after (the catalog is not counted)."""
    fragmented: list[str] = dataclasses.field(default_factory=list)
    """Tables compaction would help but that were left as they are: a ``grace`` keeps what compaction supersedes,
    and a gc never grows the store (``hquery gc --grace 0`` compacts them when no reader is running)."""

    def summary(self) -> str:
        p = self.plan
        parts = [f"{len(p.retired_models)} model version(s)", f"{len(p.retired_indexes)} index version(s)",
                 f"{len(p.dropped_tables)} projected table(s)",
                 f"{sum(len(g.versions) for g in p.lance)} superseded Lance version(s)",
                 f"{len(p.orphan_artifacts)} orphaned artifact folder(s)",
                 f"{len(p.stale_stages)} stale stage(s)"]
        compacted = f"; compacted {', '.join(self.compacted)}" if self.compacted else ""
        if self.fragmented:
            compacted += (f"; {', '.join(self.fragmented)} left uncompacted (what compaction supersedes would wait for "
                          f"the grace; --grace 0 compacts when no reader is running)")
        mib = 2**20
        return (f"removed {', '.join(parts)}{compacted}; freed {(self.size_before - self.size_after) / mib:.2f} MiB "
                f"(tables and artifacts {self.size_before / mib:.2f} -> {self.size_after / mib:.2f} MiB)")


def plan_garbage(store: Store, *, keep: int = DEFAULT_KEEP, grace: timedelta = DEFAULT_GRACE,
                 stage_max_age: timedelta = STAGE_MAX_AGE) -> GarbagePlan:
    """What :func:`collect_garbage` would delete now; ``hquery status`` shows its size as reclaimable.

    Parameters
    ----------
    keep
        Versions of each model kind, and of the index, kept besides the live ones (at least 1).
    grace
        Keep a version superseded less than this long ago.
    stage_max_age
        Keep an interrupted ingest's stage changed less than this long ago.

    Returns
    -------
    GarbagePlan
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    cutoff = utcnow() - grace
    with store.reading():
        models = store.query("gc_models")
        indexes = store.query("gc_indexes")
        live = set(store.query("live_artifacts"))
    retired_indexes = [i for i in indexes if _retirable(i, keep, cutoff)]
    gone = {i.version for i in retired_indexes}
    serving = {i.model_version for i in indexes if i.retired_at is None and i.version not in gone}
    retired_models = [m for m in models if m.version not in serving and _retirable(m, keep, cutoff)]
    retired_versions = {m.version for m in retired_models}
    dropped = [name for name in store.lance_tables()
               if name.startswith(_PROJECTED) and name.partition("__")[2] in retired_versions]
    snapshots: dict[str, set[int]] = {}
    for m in models:
        if m.retired_at is None and m.version not in retired_versions:
            for name, version in json.loads(m.data_snapshot or "{}").items():
                snapshots.setdefault(name, set()).add(int(version))
    # Lance stamps versions in local time, the catalog in UTC
    lance_cutoff = datetime.now() - grace
    lance = [g for g in store.lance_garbage(snapshots, lance_cutoff) if g.name not in dropped]
    folders = store.artifact_folders()
    live_paths = {row.path for row in live}
    retired_paths = {m.artifact_path for m in retired_models} | {i.path for i in retired_indexes}
    orphans = [path for path in folders if path not in live_paths and path not in retired_paths]
    sizes = {
        "versions": sum(folders.get(path, 0) for path in retired_paths)
        + sum(store.lance_table_bytes(name) for name in dropped),
        "lance": sum(g.bytes for g in lance),
        "orphans": sum(folders[path] for path in orphans),
    }
    stages = [s for s in store.stages() if s.changed_at <= utcnow() - stage_max_age]
    sizes["stages"] = sum(s.bytes for s in stages)
    return GarbagePlan([m.version for m in retired_models], [i.version for i in retired_indexes], dropped,
                       sorted(path for path in retired_paths if path in folders), orphans, lance,
                       [s.key for s in stages], sizes)


def collect_garbage(store: Store, *, keep: int = DEFAULT_KEEP, grace: timedelta = DEFAULT_GRACE,
                    stage_max_age: timedelta = STAGE_MAX_AGE, compact: bool = True) -> GarbageReport:
    """Delete what :func:`plan_garbage` lists, under the write lock, in one transaction.

    The catalog marks retired versions and forgets dropped tables first; their
    files go once it has committed, so a kill at any moment leaves either the old
    state or files that nothing refers to (which the next ``gc`` removes).

    Parameters
    ----------
    keep, grace, stage_max_age
        As for :func:`plan_garbage`.
    compact
        Also compact Lance tables with many fragments (:data:`COMPACT_FRAGMENTS`), where
        what compaction supersedes can go in this run (``grace`` 0): a gc never grows
        the store. Otherwise the report lists them as ``fragmented``.

    Returns
    -------
    GarbageReport

    Examples
    --------
    >>> report = collect_garbage(store, grace=timedelta(0))   # one model, one index: all in use
    >>> report.plan.retired_models, report.plan.retired_indexes, report.size_after <= report.size_before
    ([], [], True)
    """
    size_before = store.data_bytes()
    compacted: dict[str, int] = {}
    with store.transaction() as txn:
        txn.lock()
        plan = plan_garbage(store, keep=keep, grace=grace, stage_max_age=stage_max_age)
        now = utcnow()
        for version in plan.retired_models:
            txn.execute("retire_model", [now, version])
        for version in plan.retired_indexes:
            txn.execute("retire_index", [now, version])
        for name in plan.dropped_tables:
            txn.drop_lance(name)
        for path in plan.retired_artifacts + plan.orphan_artifacts:
            txn.delete_artifact(path)
        store.cleanup_lance(plan.lance)
        for key in plan.stale_stages:
            store.remove_stage(key)  # a stage a run holds right now stays
        fragmented = [name for name in store.lance_tables() if compact and name not in plan.dropped_tables
                      and len(store.dataset(name).get_fragments()) >= COMPACT_FRAGMENTS]
        if grace <= timedelta(0):
            for name in fragmented:
                compacted[name] = txn.compact_lance(name)
    if compacted:  # the versions compaction superseded, once the catalog has committed the compacted ones
        with store.transaction() as txn:
            txn.lock()
            store.cleanup_lance(plan_garbage(store, keep=keep, grace=grace, stage_max_age=stage_max_age).lance)
    return GarbageReport(plan, compacted, size_before, store.data_bytes(),
                         [name for name in fragmented if name not in compacted])


def store_status(store: Store) -> StoreSummary:
    """:meth:`Store.summary` with the space ``hquery gc`` would free now (``hquery status``)."""
    return dataclasses.replace(store.summary(), reclaimable=plan_garbage(store).bytes)


def _retirable(row, keep: int, cutoff: datetime) -> bool:
    return (row.retired_at is None and not row.pinned and row.recency > keep
            and row.superseded_at is not None and row.superseded_at <= cutoff)

