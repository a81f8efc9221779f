from datetime import timedelta

import lance
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from hquery.cli import main
from hquery.errors import StoreError
from hquery.gc import COMPACT_FRAGMENTS, collect_garbage, plan_garbage, store_status
from hquery.names import Pointer, index_artifact, projected_table
from hquery.records import index_record, model_record, record_model
from hquery.store import utcnow

NOW = timedelta(0)


def _rows(n: int, start: int = 0) -> pa.Table:
    values = np.arange(start, start + n * 2, dtype=np.float32).reshape(n, 2)
    return pa.table({"sample_id": pa.array([f"s{i}" for i in range(start, start + n)], pa.string()),
                     "values": pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 2)})


def _model(store, version: str, snapshot: dict, pointer=None, name="alignment"):
    with store.transaction() as txn:
        record_model(txn, name=name, kind=name, version=version, params={}, snapshot=snapshot, seed=0,
                     write=lambda folder: (folder / "weights.bin").write_bytes(b"w" * 1000), pointer=pointer)
        if name == "alignment":
            txn.write_lance(projected_table("slide", version), _rows(2), kind="slide_projected", encoder=version)


def _index(store, version: str, model: str, current: bool = False):
    with store.transaction() as txn:
        (txn.stage_artifact(index_artifact(version)) / "ids.json").write_text("[]")
        txn.insert("index_versions", pa.Table.from_pylist([{
            "version": version, "model_version": model, "kind": "flat", "path": index_artifact(version),
            "n_vectors": 0, "params": "{}", "metrics": "{}", "created_at": utcnow()}]))
        if current:
            txn.move_pointer(Pointer.CURRENT_INDEX, version)


@pytest.fixture
def aged(store):
    """A store after a season of refreshes: expression appended and overwritten, four alignment models
    (a4 current; a3 only behind an old index), three indexes, a PEKA adapter behind an encoder, an orphan."""
    versions = []
    for start in (0, 10, 20):
        with store.transaction() as txn:
            versions.append(txn.write_lance("expression", _rows(3, start), kind="expression"))
    _model(store, "a1", {"expression": versions[0]})
    _model(store, "a2", {"expression": versions[0]})
    _index(store, "i1", "a1")
    _model(store, "a3", {"expression": versions[1]})
    _index(store, "i2", "a3")
    _model(store, "a4", {"expression": versions[2]}, pointer=Pointer.ALIGNMENT_MODEL)
    _index(store, "i3", "a4", current=True)
    _model(store, "peka_old", {}, name="peka")
    _model(store, "peka_new", {}, name="peka", pointer=Pointer.PEKA_ADAPTER)
    with store.transaction() as txn:
        txn.insert("encoders", pa.Table.from_pylist([{
            "version": "vit_peka_old", "kind": "image", "spec": "demo-vit+peka:peka_old", "params": "{}",
            "dim": 2, "artifact_path": None, "created_at": utcnow()}]))
    (store.artifact_path("models/ghost")).mkdir(parents=True)
    (store.artifact_path("models/ghost") / "weights.bin").write_bytes(b"g" * 5000)
    store.versions = versions
    return store


def test_nothing_in_use_or_recent_is_planned(aged):
    recent = plan_garbage(aged, keep=1)  # everything was superseded a moment ago: within the grace
    assert (recent.retired_models, recent.retired_indexes, recent.dropped_tables) == ([], [], [])
    assert all(not g.versions for g in recent.lance)
    plan = plan_garbage(aged, keep=1, grace=NOW)
    # a4 is current, a3 stays behind index i2 only until i2 goes (this same run), peka_old is behind an encoder
    assert sorted(plan.retired_models) == ["a1", "a2", "a3"]
    assert sorted(plan.retired_indexes) == ["i1", "i2"]
    assert sorted(plan.dropped_tables) == [projected_table("slide", v) for v in ("a1", "a2", "a3")]
    assert plan.orphan_artifacts == ["models/ghost"] and plan.bytes["orphans"] >= 5000
    # the models trained on versions 1 and 2 go; a4 was trained on the committed one
    expression = next(g for g in plan.lance if g.name == "expression")
    assert expression.versions == aged.versions[:2]
    assert plan.total_bytes == sum(plan.bytes.values()) > 0
    assert plan_garbage(aged, keep=5, grace=NOW).retired_models == []


def test_gc_frees_what_the_plan_said_and_keeps_what_is_served(aged):
    before = store_status(aged).reclaimable
    report = collect_garbage(aged, keep=1, grace=NOW)
    assert report.size_after < report.size_before
    assert "3 model version(s), 2 index version(s), 3 projected table(s)" in report.summary()
    for version in ("a1", "a2", "a3"):
        assert not aged.artifact_path(f"models/{version}").exists()
        assert not aged.lance_path(projected_table("slide", version)).exists()
        with pytest.raises(StoreError, match=f"'{version}' was removed by `hquery gc`"):
            model_record(aged, "alignment", version)
    with pytest.raises(StoreError, match="'i1' was removed"):
        index_record(aged, "i1")
    assert model_record(aged, "alignment").version == "a4"
    assert (model_record(aged, "peka", "peka_old").folder(aged) / "weights.bin").exists()
    assert (aged.artifact_path(index_record(aged).artifact_path) / "ids.json").exists()
    assert not aged.artifact_path("models/ghost").exists()
    # the committed rows are all there; the superseded versions nothing needs are gone
    assert aged.dataset("expression").to_table()["sample_id"].to_pylist() == [f"s{i}" for i in (0, 1, 2, 10, 11,
                                                                                                 12, 20, 21, 22)]
    with pytest.raises(ValueError):
        lance.dataset(str(aged.lance_path("expression")), version=aged.versions[0])
    after = store_status(aged).reclaimable
    assert sum(after.values()) == 0 < sum(before.values())
    # the rows stay, marked, so runs that name them keep their provenance
    retired = aged.sql("select version from models where retired_at is not null order by version")
    assert retired["version"].to_pylist() == ["a1", "a2", "a3"]


def test_a_live_models_training_snapshot_stays_readable(aged):
    _model(aged, "a5", {"expression": aged.versions[0]}, pointer=Pointer.alignment("tile"))
    plan = plan_garbage(aged, keep=1, grace=NOW)
    assert next(g for g in plan.lance if g.name == "expression").versions == [aged.versions[1]]
    collect_garbage(aged, keep=1, grace=NOW)
    assert aged.dataset("expression", aged.versions[0]).count_rows() == 3


def test_files_left_by_a_gc_killed_after_its_commit_go_at_the_next(aged):
    collect_garbage(aged, keep=1, grace=NOW)
    leftover = aged.artifact_path("models/a1")  # as if the kill came between the commit and the deletes
    leftover.mkdir(parents=True)
    (leftover / "weights.bin").write_bytes(b"w")
    assert plan_garbage(aged, keep=1, grace=NOW).orphan_artifacts == ["models/a1"]
    collect_garbage(aged, keep=1, grace=NOW)
    assert not leftover.exists()


def test_many_appends_are_compacted_without_changing_a_row(store):
    for start in range(COMPACT_FRAGMENTS):
        with store.transaction() as txn:
            txn.write_lance("expression", _rows(2, start * 2), kind="expression")
    rows = store.dataset("expression").to_table()
    report = collect_garbage(store, grace=NOW)
    assert report.compacted == {"expression": store.lance_tables()["expression"].version}
    assert len(store.dataset("expression").get_fragments()) == 1
    assert store.dataset("expression").to_table().equals(rows)
    # what compaction superseded went in the same run: the store did not grow
    assert plan_garbage(store, grace=NOW).bytes["lance"] == 0
    assert report.size_after <= report.size_before and "freed -" not in report.summary()
    assert store.dataset("expression").to_table().equals(rows)


def test_a_gc_never_grows_the_store_with_or_without_a_grace(store):
    for start in range(COMPACT_FRAGMENTS):
        with store.transaction() as txn:
            txn.write_lance("expression", _rows(2, start * 2), kind="expression")
    for grace in (timedelta(minutes=10), NOW, NOW):
        before = store.size_bytes()
        report = collect_garbage(store, grace=grace)
        assert store.size_bytes() <= before and report.size_after <= report.size_before, grace
        if grace:  # compaction would leave its superseded files for the grace: it waits, and says so
            assert report.fragmented == ["expression"] and not report.compacted
            assert "left uncompacted" in report.summary()
    assert len(store.dataset("expression").get_fragments()) == 1


def test_status_shows_reclaimable_space_and_gc_frees_it(aged):
    runner = CliRunner()
    status = runner.invoke(main, ["status", "--store", str(aged.root)])
    assert status.exit_code == 0, status.output
    assert "reclaimable:" in status.output and "orphaned files" in status.output
    dry = runner.invoke(main, ["gc", "--store", str(aged.root), "--keep", "1", "--grace", "0", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "model versions: a1, a2, a3" in dry.output and "would free" in dry.output
    assert aged.artifact_path("models/a1").exists()
    done = runner.invoke(main, ["gc", "--store", str(aged.root), "--keep", "1", "--grace", "0"])
    assert done.exit_code == 0, done.output
    assert "removed 3 model version(s)" in done.output
    again = runner.invoke(main, ["status", "--store", str(aged.root)])
    assert "reclaimable: 0 B" in again.output
    bad = runner.invoke(main, ["gc", "--store", str(aged.root), "--keep", "0"])
    assert bad.exit_code == 2 and "--keep" in bad.output


def test_gc_removes_stale_stages_but_not_one_a_run_holds(store):
    stale, held = store.stage("ingest_old"), store.stage("ingest_running")
    stale.put_record("S1", {"fragments": [], "sum": [1.0]})
    held.put_record("S2", {"fragments": [], "sum": [2.0]})
    assert plan_garbage(store).stale_stages == []  # a week's grace for the same command to resume it
    plan = plan_garbage(store, stage_max_age=NOW)
    assert sorted(plan.stale_stages) == ["ingest_old", "ingest_running"] and plan.bytes["stages"] > 0
    with held.lock():
        collect_garbage(store, grace=NOW, stage_max_age=NOW)
    assert [s.key for s in store.stages()] == ["ingest_running"]
    assert held.records()["S2"]["sum"] == [2.0]
