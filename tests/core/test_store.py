import json

import lance
import numpy as np
import pyarrow as pa
import pytest

from hquery.store import MARKER, Store, StoreError, schema_version_latest


def _table(n: int, start: int = 0) -> pa.Table:
    vectors = np.arange(start, start + n * 4, dtype=np.float32).reshape(n, 4)
    return pa.table({"sample_id": pa.array([f"s{i}" for i in range(start, start + n)], pa.string()),
                     "values": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 4)})


def test_open_missing_and_foreign_directories(tmp_path):
    with pytest.raises(StoreError, match="no hquery store at .*; create one there first"):
        Store.open(tmp_path / "nope")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "data.txt").write_text("x")
    with pytest.raises(StoreError, match="not an hquery store"):
        Store.open(tmp_path / "foreign")
    with pytest.raises(StoreError, match="not an empty directory"):
        Store.init(tmp_path / "foreign")


def test_init_is_idempotent_and_applies_schema(store):
    again = Store.init(store.root)
    assert again.schema_version() == store.schema_version() == schema_version_latest()
    views = {r["table_name"] for r in store.sql("select table_name from information_schema.tables").to_pylist()}
    assert {"samples", "sample_roles", "prompt_results", "prompt_results_wide", "lance_tables"} <= views


def test_newer_schema_is_refused(store):
    with store.connect(write=True) as con:
        con.execute("INSERT INTO schema_version VALUES (99, now())")
    with pytest.raises(StoreError, match="newer than this hquery"):
        Store.open(store.root)


def test_transaction_commits_lance_and_catalog_together(store):
    with store.transaction() as txn:
        txn.write_lance("expression", _table(3), kind="expression")
        txn.put_setting("rna_encoder", "x")
    assert store.dataset("expression").count_rows() == 3
    assert store.setting("rna_encoder") == "x"


def test_failed_transaction_leaves_nothing(store):
    with store.transaction() as txn:
        txn.write_lance("expression", _table(3), kind="expression")
    with pytest.raises(RuntimeError):
        with store.transaction() as txn:
            txn.write_lance("expression", _table(2, start=10), kind="expression")
            txn.write_lance("brand_new", _table(2), kind="x")
            txn.put_setting("rna_encoder", "y")
            raise RuntimeError("boom")
    assert store.dataset("expression").count_rows() == 3
    assert lance.dataset(str(store.lance_path("expression"))).count_rows() == 3
    assert not store.lance_path("brand_new").exists()
    assert store.setting("rna_encoder") is None


def test_uncommitted_lance_writes_are_invisible_then_rolled_back(store):
    with store.transaction() as txn:
        txn.write_lance("expression", _table(3), kind="expression")
    # a writer killed after its Lance append but before the catalog commit
    lance.write_dataset(_table(5, start=3), str(store.lance_path("expression")), mode="append")
    lance.write_dataset(_table(1), str(store.lance_path("orphan")), mode="create")
    assert store.dataset("expression").count_rows() == 3
    assert "orphan" not in store.lance_relations()
    with store.transaction() as txn:  # catalog-only: leaves Lance alone
        txn.put_setting("note", "x")
    assert store.dataset("expression").count_rows() == 3
    with store.transaction() as txn:  # the next Lance writer undoes the killed one first
        txn.write_lance("expression", _table(1, start=50), kind="expression")
    assert lance.dataset(str(store.lance_path("expression"))).count_rows() == 4
    assert not store.lance_path("orphan").exists()
    assert store.dataset("expression").count_rows() == 4


def test_one_writer_at_a_time_and_catalog_records_never_wait_for_it(store, monkeypatch, caplog):
    monkeypatch.setenv("HQUERY_LOCK_WAIT", "0.3")
    with store.transaction() as txn:
        txn.write_lance("expression", _table(3), kind="expression")
        other = Store.open(store.root)
        with pytest.raises(StoreError, match=r"another hquery process \(pid \d+\) is writing .* \(waited 0s\)"):
            with other.transaction() as second:
                second.write_lance("expression", _table(1, start=9), kind="expression")
        assert "waiting for another hquery process" in caplog.text
        with other.transaction() as record:  # a prompt's record, say: catalog only, no lock to wait for
            record.put_setting("note", "recorded while a writer works")
    assert store.setting("note") == "recorded while a writer works"
    assert store.dataset("expression").count_rows() == 3


def test_user_sql_is_read_only_and_sees_lance(store):
    with store.transaction() as txn:
        txn.write_lance("expression", _table(3), kind="expression")
    out = store.sql("select count(*) as n, sum(values[1]) as s from expression").to_pylist()
    assert out == [{"n": 3, "s": 0.0 + 4 + 8}]
    with pytest.raises(StoreError, match="SQL error"):
        store.sql("delete from samples")


def test_marker_must_describe_a_store(tmp_path):
    root = tmp_path / "s"
    Store.init(root)
    (root / MARKER).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(StoreError, match="does not describe"):
        Store.open(root)


def test_an_older_store_is_migrated_on_open(tmp_path):
    from hquery.store import schema_version_latest

    old = Store(tmp_path / "old")
    old.root.mkdir()
    (old.root / "lance").mkdir()
    (old.root / "artifacts").mkdir()
    old._migrate(upto=1)  # a store written by hquery with schema 1
    (old.root / MARKER).write_text(json.dumps({"format": "hquery-store"}))
    assert old.schema_version() == 1
    store = Store.open(old.root)
    assert store.schema_version() == schema_version_latest() >= 2
    assert store.sql("select count(*) n from model_metrics_summary").to_pylist() == [{"n": 0}]


def test_reading_shares_one_connection_and_refuses_writes(store):
    with store.reading():
        with store.connect() as first, store.connect() as second:
            assert first is second
        assert store.setting("image_encoder") is None
        with pytest.raises(RuntimeError, match="inside Store.reading"):
            with store.transaction():
                pass
    with store.transaction() as txn:
        txn.put_setting("image_encoder", "x")
    assert store.setting("image_encoder") == "x"


def test_rows_come_back_named_and_pointers_move_only_on_commit(store):
    from hquery.names import Pointer

    row = store.query("gene_set_names")[0]
    assert row.name.startswith("HALLMARK_") and row.collection == "hallmark"
    assert store.pointer(Pointer.CURRENT_INDEX) is None
    try:
        with store.transaction() as txn:
            txn.move_pointer(Pointer.CURRENT_INDEX, "idx_never")
            raise RuntimeError("killed before the commit")
    except RuntimeError:
        pass
    assert store.pointer(Pointer.CURRENT_INDEX) is None
    with store.transaction() as txn:
        txn.move_pointer(Pointer.CURRENT_INDEX, "idx_1")
    assert store.pointer(Pointer.CURRENT_INDEX) == "idx_1" == store.summary().pointers["current_index"]


def test_model_versions_are_recorded_and_found_one_way(store):
    from hquery.errors import NotReadyError, StoreError
    from hquery.names import Pointer
    from hquery.records import model_record, record_model

    with pytest.raises(NotReadyError, match="no HistoPrism model yet") as caught:
        model_record(store, "histoprism")
    assert caught.value.needs == "train histoprism"
    with store.transaction() as txn:
        record_model(txn, name="histoprism", kind="histoprism_expression", version="histoprism_x", params={"a": 1},
                     snapshot={"expression": 3}, seed=0, write=lambda folder: (folder / "w.bin").write_bytes(b"w"),
                     metrics={"cv": {}}, pointer=Pointer.HISTOPRISM)
    record = model_record(store, "histoprism")
    assert (record.version, record.params, record.data_snapshot) == ("histoprism_x", {"a": 1}, {"expression": 3})
    assert (record.folder(store) / "w.bin").read_bytes() == b"w"
    assert json.loads((record.folder(store) / "config.json").read_text()) == {"a": 1}
    with pytest.raises(StoreError, match="no PEKA adapter 'histoprism_x'"):
        model_record(store, "peka", "histoprism_x")


def test_a_committed_artifact_is_never_rewritten_and_an_orphan_is_replaced(store):
    import pyarrow as pa

    from hquery.store import utcnow

    def record_eval(txn, eval_id):
        txn.insert("prompt_eval_runs", pa.Table.from_pylist([{
            "eval_id": eval_id, "created_at": utcnow(), "collection": "c", "folds": 2, "k": 1, "tau": 0.1,
            "n_slides": 1, "seconds": 0.0, "params": "{}"}]))

    with store.transaction() as txn:
        (txn.stage_artifact("evals/e1") / "plot.png").write_text("first")
        record_eval(txn, "e1")
    with pytest.raises(StoreError, match="evals/e1 belongs to a committed version"):
        with store.transaction() as txn:
            (txn.stage_artifact("evals/e1") / "plot.png").write_text("second")
    assert (store.artifact_path("evals/e1") / "plot.png").read_text() == "first"
    # a commit killed after moving its files but before the catalog took them leaves an orphan: replaced
    orphan = store.artifact_path("evals/e2")
    orphan.mkdir(parents=True)
    (orphan / "plot.png").write_text("orphan")
    with store.transaction() as txn:
        (txn.stage_artifact("evals/e2") / "plot.png").write_text("new")
        record_eval(txn, "e2")
    assert (orphan / "plot.png").read_text() == "new"


def test_a_failed_init_leaves_no_half_made_store(tmp_path, monkeypatch):
    def broken(self, upto=None):
        raise OSError("killed here")

    monkeypatch.setattr(Store, "_migrate", broken)
    with pytest.raises(StoreError, match="cannot create a store"):
        Store.init(tmp_path / "s")
    assert not (tmp_path / "s").exists() and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert Store.init(tmp_path / "s").schema_version() > 0
