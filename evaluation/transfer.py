"""Cross-cohort evaluation (the seed paper's held-out cohorts): heads fitted only on the training cohorts' pairs,
tested on a cohort none of whose patients they saw, with a library built from other cohorts.

Beside every transfer number stands the test cohort's own cross-validated one
(patient-level folds within it, its training folds' profiles added to the same
library), so the generalisation gap is a number: in-cohort minus transfer.
Retrieval is scored in both directions among the pairs of each in-cohort fold's
held-out patients, by both models, since recall@K depends on how many
candidates there are; with the ridge and chance baselines; the spectrum by the same routes as ``hquery eval
spectrum`` (calibrated Soft-kNN, the MLP, the ridge+type floor and their
ensemble), each predicted from the library and the truth the ssGSEA of the test
slides' own RNA.

HistoPrism joins them when the store serves one (or when asked): fitted on the
training cohorts' slides, it predicts the collection's genes for each test slide,
scored by the same ssGSEA. Its scores sit on another scale, so the line that puts
them on the truth's is fitted on the training cohorts' own held-out predictions
(patient folds within them); in-cohort, on the other folds' as in ``hquery eval compare``.
No line ever sees a test slide's truth.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from hquery.errors import InputError
from hquery.evaluation.compare import check_same_slides
from hquery.evaluation.spectrum import SpectrumInputs, _fit_and_project, _metrics, predict_split
from hquery.names import Pointer
from hquery.records import model_record
from hquery.retrieval.neighbours import NeighbourRule
from hquery.retrieval.routes import spectrum_route_names
from hquery.retrieval.softknn import SoftKNN
from hquery.scoring import match_gene_sets, ssgsea
from hquery.stats import apply_lines, calibration_lines, cross_fitted_lines, finite_mean
from hquery.store import Store, record_id, utcnow
from hquery.training.bags import load_slide_bags
from hquery.training.cv import CVReport, cross_validate, evaluate_fold
from hquery.training.fit import fit_alignment
from hquery.training.heads import AlignmentConfig
from hquery.training.histoprism import HistoPrismConfig
from hquery.training.histoprism_trainer import gene_panel, predict_held_out
from hquery.training.metrics import KS
from hquery.training.splits import patient_folds

SETTINGS = ("transfer", "in_cohort")


@dataclasses.dataclass
class TransferReport:
    train_cohorts: list[str]
    test_cohort: str
    library_cohorts: list[str]
    n_train: int
    n_test: int
    n_library: int
    recall: dict[str, dict]
    """``{setting: {method: {direction: {metric: value}}}}``, means over the in-cohort folds' held-out pools."""
    rows: list[dict]
    """Per setting, gene set and route: r2_calibrated, pearson_r, r_within_type."""
    notes: list[str]
    transfer_id: str | None = None
    """Set when recorded (``transfer_runs`` / ``transfer_results``)."""

    def means(self, gene_sets: Sequence[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
        """``{setting: {route: {metric: mean over the gene sets}}}``."""
        wanted = set(gene_sets) if gene_sets else None
        out: dict = {}
        for setting in SETTINGS:
            for route in dict.fromkeys(r["method"] for r in self.rows):
                rows = [r for r in self.rows if r["setting"] == setting and r["method"] == route
                        and (wanted is None or r["gene_set"] in wanted)]
                out.setdefault(setting, {})[route] = {
                    name: finite_mean(np.array([r[name] for r in rows], float))
                    for name in ("r2_calibrated", "pearson_r", "r_within_type")}
        return out


def evaluate_transfer(store: Store, train: Sequence[str], test: str, *, library: Sequence[str] | None = None,
                      collection: str = "hallmark", folds: int = 5, knn: SoftKNN | None = None,
                      neighbours: NeighbourRule | None = None,
                      config: AlignmentConfig = AlignmentConfig(), histoprism: bool | HistoPrismConfig | None = None,
                      workers: int | None = None, record: bool = True) -> TransferReport:
    """Fit on the ``train`` cohorts' pairs, test on cohort ``test``'s; the test cohort's own CV beside it.

    Parameters
    ----------
    train, test
        Cohort names (``cohorts`` in the catalog); the test cohort may not be among the training ones.
    library
        Cohorts whose RNA profiles the neighbours come from (default: every cohort but ``test``).
    folds
        Patient-level folds of the in-cohort comparison (and of the training cohorts, for HistoPrism's line).
    histoprism
        Add the HistoPrism route: ``None`` when the store serves a HistoPrism (with its settings), ``True`` with
        the default settings, or these settings; ``False`` leaves it out.
    workers
        Processes for HistoPrism's fits.
    record
        Write the report to ``transfer_runs`` / ``transfer_results``.

    Returns
    -------
    TransferReport
    """
    knn, neighbours = knn or SoftKNN(), neighbours or NeighbourRule()
    train = list(dict.fromkeys(train))
    if test in train:
        raise InputError(f"cohort {test!r} is both trained and tested on; a transfer test needs a cohort the heads "
                         "never saw")
    inputs = SpectrumInputs.load(store, collection, neighbours)
    pairs = inputs.pairs
    cohort_of = {r.sample_id: r.cohort for r in store.query("sample_metadata")}
    known = sorted(set(cohort_of.values()))
    unknown = [c for c in [*train, test, *(library or [])] if c not in known]
    if unknown:
        raise InputError(f"no cohort {', '.join(map(repr, unknown))}; cohorts: {', '.join(known)}")
    library = list(library) if library is not None else [c for c in known if c != test]
    pair_cohort = np.array([cohort_of[s] for s in pairs.sample_ids])
    train_rows, test_rows = np.flatnonzero(np.isin(pair_cohort, train)), np.flatnonzero(pair_cohort == test)
    for name, rows, where in (("training", train_rows, ", ".join(train)), ("test", test_rows, test)):
        if len(rows) < 10:
            raise InputError(f"the {name} cohort(s) {where} hold {len(rows)} pairs; a transfer test needs 10 or more")
    in_library = np.isin(np.array([cohort_of[s] for s in inputs.library.sample_ids]), library)
    searchable = inputs.allowed & in_library & ~np.isin(inputs.library_patients, pairs.patients[test_rows])
    if not searchable.any():
        raise InputError(f"the library cohorts {', '.join(library)} hold no profile a test slide may draw on")
    notes: list[str] = []

    model, _ = fit_alignment(pairs.image[train_rows], pairs.rna[train_rows], pairs.patients[train_rows], config,
                             cancer_types=pairs.cancer_types[train_rows])
    # retrieval is scored among the same held-out pools as the in-cohort folds: recall@K depends on the pool's size
    tested = pairs.subset(test_rows)
    pools = [b for _, b in patient_folds(tested.patients, folds, config.seed)]
    transfer = CVReport([evaluate_fold(pairs.subset(train_rows), tested.subset(pool), config, KS, "cpu",
                                       lambda *a, **k: (model, None)) for pool in pools])
    recall = {setting: {m: {d: {k: v["mean"] for k, v in metrics.items()} for d, metrics in by_dir.items()}
                        for m, by_dir in report.as_dict().items()}
              for setting, report in (("transfer", transfer), ("in_cohort", cross_validate(tested, folds, config)))}

    rows = _spectrum_rows("transfer", inputs, [(train_rows, test_rows)], searchable, knn, neighbours, config, notes)
    splits = [(test_rows[a], test_rows[b]) for a, b in patient_folds(pairs.patients[test_rows], folds, config.seed)]
    own_library = inputs.allowed & (in_library | np.isin(np.array([cohort_of[s] for s in inputs.library.sample_ids]),
                                                         [test]))
    rows += _spectrum_rows("in_cohort", inputs, splits, own_library, knn, neighbours, config, notes)
    histoprism = _histoprism_config(store, histoprism)
    if histoprism is not None:
        rows += _histoprism_rows(store, inputs, collection, train_rows, splits, folds, histoprism, workers)
    report = TransferReport(train, test, library, len(train_rows), len(test_rows), int(searchable.sum()), recall,
                            rows, list(dict.fromkeys(notes)))
    if record:
        record_transfer(store, report, {"collection": collection, "folds": folds, "k": knn.k, "tau": knn.tau,
                                        "neighbours": neighbours.as_json(), "config": dataclasses.asdict(config),
                                        "histoprism": histoprism and dataclasses.asdict(histoprism)})
    return report


def record_transfer(store: Store, report: TransferReport, params: dict) -> str:
    """Write ``report`` to ``transfer_runs`` and ``transfer_results`` (recall and spectrum, long format)."""
    created = utcnow()
    report.transfer_id = record_id("transfer", created)
    recall = [{"setting": setting, "method": method, "direction": direction, "metric": metric, "gene_set": None,
               "value": float(value)}
              for setting, by_method in report.recall.items() for method, by_dir in by_method.items()
              for direction, metrics in by_dir.items() for metric, value in metrics.items()]
    spectrum = [{"setting": r["setting"], "method": r["method"], "direction": None, "metric": metric,
                 "gene_set": r["gene_set"], "value": float(r[metric])}
                for r in report.rows for metric in ("r2_calibrated", "pearson_r", "r_within_type")]
    with store.transaction() as txn:
        txn.insert("transfer_runs", pa.Table.from_pylist([{
            "transfer_id": report.transfer_id, "created_at": created, "train_cohorts": json.dumps(report.train_cohorts),
            "test_cohort": report.test_cohort, "library_cohorts": json.dumps(report.library_cohorts),
            "n_train": report.n_train, "n_test": report.n_test, "n_library": report.n_library,
            "params": json.dumps({**params, "notes": report.notes})}]))
        txn.insert("transfer_results", pa.Table.from_pylist(
            [{"transfer_id": report.transfer_id, **row} for row in recall + spectrum],
            schema=pa.schema([("transfer_id", pa.string()), ("setting", pa.string()), ("method", pa.string()),
                              ("direction", pa.string()), ("metric", pa.string()), ("gene_set", pa.string()),
                              ("value", pa.float64())])))
    return report.transfer_id


def _spectrum_rows(setting: str, inputs: SpectrumInputs, splits, library_mask: np.ndarray, knn: SoftKNN,
                   neighbours: NeighbourRule, config: AlignmentConfig, notes: list[str]) -> list[dict]:
    """Held-out predictions of every split's test pairs, pooled, and each route's metrics per gene set."""
    pairs = inputs.pairs
    tested = np.concatenate([test for _, test in splits])
    pooled: dict[str, np.ndarray] = {}
    for train, test in splits:
        library_vecs, slide_vecs = _fit_and_project(
            pairs.image[train], pairs.rna[train], pairs.patients[train], pairs.cancer_types[train], config,
            inputs.library_rna, pairs.image, pairs.cancer_types)
        searchable = library_mask & ~np.isin(inputs.library_patients, pairs.patients[test])
        fold = predict_split(pairs, train, test, library_vecs, slide_vecs, searchable, inputs.library_scores,
                             inputs.library_patients, inputs.library_values, inputs.metadata, neighbours, knn,
                             inputs.truth, inputs.types, config.seed)
        notes += [f"{setting}: {note}" for note in fold.pop("notes")]
        fold.pop("dispersion")
        for route, values in fold.items():
            pooled.setdefault(route, np.full((len(pairs), len(inputs.gene_sets)), np.nan))[test] = values
    predictions = {route: values[tested] for route, values in pooled.items()}
    names = [gs.name for gs in inputs.gene_sets]
    scored = tuple(route for route in spectrum_route_names() if route in predictions)
    rows = _metrics(inputs.truth[tested], predictions, names, inputs.types[tested], {}, scored)
    return [{"setting": setting, **row} for row in rows]


def _histoprism_config(store: Store, histoprism: bool | HistoPrismConfig | None) -> HistoPrismConfig | None:
    if isinstance(histoprism, HistoPrismConfig):
        return histoprism
    if histoprism is None:
        served = store.pointer(Pointer.HISTOPRISM)
        return HistoPrismConfig(**model_record(store, "histoprism", served).params["config"]) if served else None
    return HistoPrismConfig() if histoprism else None


def _histoprism_rows(store: Store, inputs: SpectrumInputs, collection: str, train_rows: np.ndarray,
                     splits: list[tuple[np.ndarray, np.ndarray]], folds: int, config: HistoPrismConfig,
                     workers: int | None) -> list[dict]:
    """HistoPrism on the training cohorts, scored on the test cohort, and within the test cohort's folds."""
    pairs = inputs.pairs
    panel = gene_panel(store, f"collection:{collection}")
    bags = load_slide_bags(store, genes=panel.positions)
    check_same_slides(pairs.sample_ids, bags.sample_ids)
    inner = [(train_rows[a], train_rows[b]) for a, b in patient_folds(pairs.patients[train_rows], folds, config.seed)]
    test_rows = np.concatenate([test for _, test in splits])
    predicted = predict_held_out(bags, [*inner, (train_rows, test_rows), *splits], config, workers=workers)
    matches = match_gene_sets(panel.genes, {gs.name: gs.members for gs in inputs.gene_sets})

    def scores(profiles: list[np.ndarray]) -> np.ndarray:
        return ssgsea(np.concatenate(profiles), [m.positions for m in matches])

    held_out = np.concatenate([test for _, test in inner])
    transfer = scores([predicted[len(inner)]])
    line = calibration_lines(scores(predicted[: len(inner)]), inputs.truth[held_out])
    own = scores(predicted[len(inner) + 1:])
    fold_of = np.concatenate([np.full(len(test), f) for f, (_, test) in enumerate(splits)])
    names = [gs.name for gs in inputs.gene_sets]
    rows = []
    for setting, raw, calibrated in (("transfer", transfer, apply_lines(transfer, *line)),
                                     ("in_cohort", own, cross_fitted_lines(own, inputs.truth[test_rows], fold_of))):
        rows += [{"setting": setting, **row} for row in _metrics(
            inputs.truth[test_rows], {"histoprism": raw, "histoprism_calibrated": calibrated}, names,
            inputs.types[test_rows], {}, ("histoprism",))]
    return rows
