"""The refresh loop: retrain when new pairs arrive, keep the new model only if it retrieves as well, reindex.

A refresh, holding the store's refresh lock from start to end:

1. finds the model *in service* (the one behind the current index) and the
   pairs it never saw (by the Lance versions it was trained on); with none, it
   records ``nothing_new`` and stops, unless forced;
2. optionally fits a PEKA adapter and re-embeds the slides with it;
3. holds out some patients the service model never saw (half of the new
   patients, by default) and fits a candidate on every other pair;
4. scores both models on those held-out patients (recall@10, H&E -> RNA, each
   model on its own encoders' embeddings, each slide ranking its own RNA among
   the held-out profiles its prompt could draw on: those sharing its cancer type
   under the default :class:`~hquery.retrieval.neighbours.NeighbourRule`, where
   there are at least 10) and promotes the candidate only if it
   does not fall more than ``tolerance`` below the service model. The default,
   ``auto``, is two standard errors of the per-query difference in hits: with a
   few dozen held-out patients, recall@10 moves by several points between two
   fits of the same recipe, and only a fall beyond that is a regression;
5. on promotion, fits the deployable model on every pair, projects the library,
   builds the index and moves the current pointer (one commit).

Each step's time and the outcome go to ``refresh_runs``. Killing a refresh at
any moment leaves the store at the last promoted model and index: every write
is a store transaction, and prompts read whatever the current index is.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from hquery.ingest import reembed_slides
from hquery.names import Pointer
from hquery.records import ModelRecord, model_record, service_model
from hquery.retrieval.index_builder import build_index
from hquery.retrieval.neighbours import NeighbourPlan, NeighbourRule, SampleMetadata, plan_neighbours
from hquery.store import Store, StoreError, utcnow
from hquery.training.alignment_trainer import train_alignment
from hquery.training.fit import fit_alignment, project
from hquery.training.heads import AlignmentConfig
from hquery.training.metrics import target_ranks
from hquery.training.pairs import Pairs, load_pairs
from hquery.training.peka import PEKAConfig
from hquery.training.registry import load_model
from hquery.training.splits import patient_holdout


@dataclasses.dataclass
class RefreshReport:
    refresh_id: str
    status: str
    """``nothing_new``, ``promoted`` or ``rejected``."""
    reason: str
    service_model: str | None = None
    candidate_model: str | None = None
    index_version: str | None = None
    peka_adapter: str | None = None
    n_pairs: int = 0
    n_new_pairs: int = 0
    n_eval_patients: int = 0
    service_recall_at_10: float | None = None
    candidate_recall_at_10: float | None = None
    tolerance: float | None = None
    """The fall in recall@10 the gate allowed (resolved from ``auto``)."""
    steps: list[dict] = dataclasses.field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s["seconds"] for s in self.steps)

    def summary(self) -> str:
        scores = ""
        if self.candidate_recall_at_10 is not None:
            service = "n/a" if self.service_recall_at_10 is None else f"{self.service_recall_at_10:.3f}"
            scores = (f"; held-out recall@10 on {self.n_eval_patients} new patients: candidate "
                      f"{self.candidate_recall_at_10:.3f}, in service {service}")
        if self.tolerance is not None and self.candidate_recall_at_10 is not None:
            scores += f" (tolerance {self.tolerance:.3f})"
        index = f"; index {self.index_version} is current" if self.status == "promoted" else ""
        return f"refresh {self.refresh_id}: {self.status} ({self.reason}){scores}{index}; {self.seconds:.1f}s"


def trained_on(store: Store, record: ModelRecord) -> set[str]:
    """Sample ids of the pairs a model was trained on, read from the Lance versions it recorded."""
    seen: set[str] | None = None
    for name, version in record.data_snapshot.items():
        dataset = store.dataset(name, version)
        ids = set(dataset.to_table(columns=["sample_id"])["sample_id"].to_pylist()) if dataset is not None else set()
        seen = ids if seen is None else seen & ids
    return seen or set()


def refresh(store: Store, *, force: bool = False, tolerance: float | str = "auto", eval_fraction: float = 0.5,
            config: AlignmentConfig = AlignmentConfig(), peka: PEKAConfig | None = None, device: str = "cpu",
            neighbours: NeighbourRule | None = None, echo: Callable[[str], None] = lambda line: None) -> RefreshReport:
    """Retrain on new pairs, gate the candidate on held-out recall@10 against the model in service, reindex.

    Parameters
    ----------
    force
        Refresh even when no pair is new. The held-out patients are then a fifth
        of all patients; the service model has seen them, so the gate favours it.
    tolerance
        How far below the service model's recall@10 the candidate may fall and
        still be promoted; ``"auto"``: two standard errors of the paired
        per-query difference in hits on the held-out patients.
    eval_fraction
        Fraction of the new patients held out to score both models (at least one patient).
    peka
        If given, first fit a PEKA adapter with this config and re-embed the slides with it.
    neighbours
        The neighbour rule the gate's recall@10 searches under (default
        ``NeighbourRule()``, as prompts: the slide's own cancer type).

    Returns
    -------
    RefreshReport, also recorded in ``refresh_runs``. Raises :class:`StoreError`
    when another refresh holds the store.
    """
    if tolerance != "auto" and not isinstance(tolerance, (int, float)):
        raise ValueError(f"tolerance must be a number or 'auto', not {tolerance!r}")
    with store.refresh_lock():
        with store.transaction() as txn:
            txn.execute("mark_interrupted_refreshes")
        report = RefreshReport(uuid.uuid4().hex[:12], "running", "")
        started_at = utcnow()
        clock = [time.perf_counter()]

        def step(name: str) -> None:
            now = time.perf_counter()
            report.steps.append({"step": name, "seconds": round(now - clock[0], 3)})
            clock[0] = now
            echo(f"{name} ({report.steps[-1]['seconds']:.1f}s)")

        serving = service_model(store)
        report.service_model = serving
        pairs = load_pairs(store)
        report.n_pairs = len(pairs)
        record = model_record(store, "alignment", serving) if serving else None
        seen = trained_on(store, record) if record else set()
        new = [i for i, s in enumerate(pairs.sample_ids) if s not in seen]
        report.n_new_pairs = len(new)
        step("found new pairs")
        if serving and not new and not force:
            report.status, report.reason = "nothing_new", f"no pairs since {serving} was trained; a forced refresh retrains anyway"
            _record(store, report, started_at, finished=True)
            return report
        _record(store, report, started_at)
        try:
            _run(store, report, pairs, new, seen, record, force, tolerance, eval_fraction, config, peka, device,
                 neighbours or NeighbourRule(), step)
        except BaseException as exc:
            if isinstance(exc, Exception):
                report.status, report.reason = "failed", f"{type(exc).__name__}: {exc}"
                _record(store, report, started_at, finished=True)
            raise
        _record(store, report, started_at, finished=True)
        return report


def _run(store: Store, report: RefreshReport, pairs: Pairs, new: list[int], seen: set[str], record: ModelRecord | None,
         force: bool, tolerance: float | str, eval_fraction: float, config: AlignmentConfig,
         peka: PEKAConfig | None, device: str, rule: NeighbourRule, step: Callable[[str], None]) -> None:
    if peka is not None:
        from hquery.training.peka_trainer import train_peka

        report.peka_adapter = train_peka(store, peka, compare=False, device=device).version
        step("fitted the PEKA adapter")
        reembed_slides(store, report.peka_adapter, device=device)
        pairs = load_pairs(store)
        step("re-embedded the slides")
    if record is None:
        report.reason = "no model in service yet"
        _promote(store, report, config, device, step)
        return
    eval_ids = _held_out(pairs, new, seen, eval_fraction, force, config.seed)
    report.n_eval_patients = len(set(pairs.patients[eval_ids]))
    held_out = np.zeros(len(pairs), bool)
    held_out[eval_ids] = True
    train = pairs.subset(np.flatnonzero(~held_out))
    candidate, _ = fit_alignment(train.image, train.rna, train.patients, config, device=device,
                                 cancer_types=train.cancer_types)
    step("fitted the candidate")
    plan = _gate_plan(store, pairs.subset(eval_ids), rule)
    candidate_hits = _hits(candidate, pairs.subset(eval_ids), plan)
    report.candidate_recall_at_10 = float(candidate_hits.mean())
    service, params = load_model(store, "alignment", record.version)[0], record.params
    try:
        served = load_pairs(store, image_encoder=params["image_encoder"], rna_encoder=params["rna_encoder"])
    except StoreError:
        served = None
    position = {s: i for i, s in enumerate(served.sample_ids)} if served else {}
    eval_samples = [pairs.sample_ids[i] for i in eval_ids]
    step("scored both models")
    if any(s not in position for s in eval_samples):
        report.status = "rejected"
        report.reason = (f"the model in service cannot score the held-out pairs: its encoder "
                         f"{params['image_encoder']} has no embeddings for some; train the alignment and build the index again")
    else:
        service_hits = _hits(service, served.subset(np.array([position[s] for s in eval_samples])), plan)
        report.service_recall_at_10 = float(service_hits.mean())
        report.tolerance = (paired_tolerance(candidate_hits, service_hits) if tolerance == "auto"
                            else float(tolerance))
        if report.candidate_recall_at_10 >= report.service_recall_at_10 - report.tolerance:
            fall = report.service_recall_at_10 - report.candidate_recall_at_10
            report.reason = ("held-out recall@10 did not fall" if fall <= 0 else
                             f"held-out recall@10 fell by {fall:.3f}, within the tolerance {report.tolerance:.3f}")
            _promote(store, report, config, device, step)
            return
        report.status = "rejected"
        report.reason = (f"held-out recall@10 fell from {report.service_recall_at_10:.3f} to "
                         f"{report.candidate_recall_at_10:.3f}, more than the tolerance {report.tolerance:.3f}")
    if report.peka_adapter:  # keep serving, and ingesting, with the encoder the service model reads
        with store.transaction() as txn:
            txn.move_pointer(Pointer.IMAGE_ENCODER, params["image_encoder"])
            encoder = store.query("encoder", [params["image_encoder"]])
            if encoder:
                txn.move_pointer(Pointer.IMAGE_ENCODER_SPEC, encoder[0].spec)


def _gate_plan(store: Store, held_out: Pairs, rule: NeighbourRule, k: int = 10) -> NeighbourPlan:
    """Which held-out profiles each held-out slide ranks its own RNA among, under ``rule``."""
    values = SampleMetadata.load(store, rule.match).values
    allowed = None
    if rule.where:
        keep = set(store.samples_where(rule.where, library=True))
        allowed = np.array([s in keep for s in held_out.sample_ids], bool)
    own = [values[s] for s in held_out.sample_ids]
    return plan_neighbours(own, own, held_out.patients, k - 1, columns=rule.match, allowed=allowed)


def _hits(model, pairs: Pairs, plan: NeighbourPlan, k: int = 10) -> np.ndarray:
    """Per held-out slide: is its own RNA profile among its model's top ``k`` (H&E -> RNA) in its plan's group?"""
    similarity = project(model, image=pairs.image, cancer_types=pairs.cancer_types) @ project(model, rna=pairs.rna).T
    searchable = np.zeros(similarity.shape, bool)
    for q, group in enumerate(plan.group_of):
        searchable[q, plan.groups[group]] = True
    searchable[np.arange(len(pairs)), np.arange(len(pairs))] = True
    return target_ranks(np.where(searchable, similarity, -np.inf)) < k


def paired_tolerance(candidate_hits: np.ndarray, service_hits: np.ndarray) -> float:
    """Two standard errors of the mean per-query difference in hits (0 with fewer than two queries)."""
    difference = np.asarray(candidate_hits, float) - np.asarray(service_hits, float)
    if len(difference) < 2:
        return 0.0
    return float(2 * difference.std(ddof=1) / np.sqrt(len(difference)))


def _held_out(pairs: Pairs, new: list[int], seen: set[str], fraction: float, force: bool, seed: int) -> np.ndarray:
    """Rows of the patients both models are scored on: new patients the service model never saw, if any."""
    if not new:
        if not force:
            raise StoreError("no new pairs to hold out")
        return patient_holdout(pairs.patients, 0.2, seed)[1]
    seen_patients = {p for s, p in zip(pairs.sample_ids, pairs.patients) if s in seen}
    candidates = sorted({pairs.patients[i] for i in new} - seen_patients) or sorted({pairs.patients[i] for i in new})
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(candidates, max(1, int(round(fraction * len(candidates)))), replace=False))
    return np.flatnonzero(np.isin(pairs.patients, list(chosen)))


def _promote(store: Store, report: RefreshReport, config: AlignmentConfig, device: str,
             step: Callable[[str], None]) -> None:
    trained = train_alignment(store, config=config, device=device, workers=1)
    step("fitted the deployable model on every pair")
    report.candidate_model = trained.version
    report.index_version = build_index(store, model_version=trained.version).version
    step("built the index")
    report.status = "promoted"


def _record(store: Store, report: RefreshReport, started_at, finished: bool = False) -> None:
    row = {k: v for k, v in dataclasses.asdict(report).items() if k != "steps"}
    row |= {"started_at": started_at, "finished_at": utcnow() if finished else None,
            "steps": json.dumps(report.steps)}
    with store.transaction() as txn:
        txn.insert("refresh_runs", pa.Table.from_pylist([row]))


def parse_interval(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``6h`` or ``1d``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not match:
        raise ValueError(f"interval {text!r}: use a number and s, m, h or d (e.g. 6h)")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
