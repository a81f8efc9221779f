"""The Ray engine: the same store as the local path, resumable after a kill, bad slides named or skipped."""

import json
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from hquery.errors import InputError
from hquery.ingest import ingest_cohort
from hquery.ingest.genesets import add_builtin_gene_data
from hquery.parallel import RayOptions
from hquery.store import Store, vectors
from tests.conftest import snapshot, write_cohort

ray = pytest.importorskip("ray")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
TWO_WORKERS = RayOptions(workers=2, cpus_per_worker=1)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (the library joins a running one instead of starting its own)."""
    warnings.filterwarnings("ignore", message="lance is not fork-safe")  # Ray forks and execs: safe for lance
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def new_store(root: Path) -> Store:
    store = Store.init(root)
    add_builtin_gene_data(store)
    return store


def table_rows(store: Store) -> dict:
    """Every committed Lance table's rows, vectors as arrays."""
    out = {}
    for name in store.lance_tables():
        table = store.dataset(name).to_table()
        out[name] = {c: (vectors(table[c]) if c in ("embedding", "values") else table[c].to_pylist())
                     for c in table.column_names}
    return out


def catalog_rows(store: Store) -> dict:
    return {t: store.sql(f"select * exclude ({drop}) from {t} order by all").to_pylist()
            for t, drop in (("samples", "ingest_id"), ("slides", "ingest_id"), ("tiles", "x"))}


def assert_same_store(local: Store, distributed: Store) -> None:
    """The same Lance tables with the same rows in the same order (vectors within 1e-5), and the same catalog rows."""
    a, b = table_rows(local), table_rows(distributed)
    assert a.keys() == b.keys() and any(k.startswith("tile_embeddings__") for k in a)
    for name in a:
        for column, values in a[name].items():
            if isinstance(values, np.ndarray):
                np.testing.assert_allclose(b[name][column], values, atol=1e-5, err_msg=f"{name}.{column}")
            else:
                assert b[name][column] == values, f"{name}.{column}"
    assert catalog_rows(local) == catalog_rows(distributed)


def test_ray_engine_writes_what_the_local_path_writes(tmp_path, local_ray):
    manifest, expression = write_cohort(tmp_path / "cohort", n_pairs=5, n_ref=3, n_query=2)
    local, distributed = new_store(tmp_path / "local"), new_store(tmp_path / "ray")
    one = ingest_cohort(local, manifest, expression=expression, encoder="demo-vit")
    two = ingest_cohort(distributed, manifest, expression=expression, encoder="demo-vit", engine=TWO_WORKERS)
    assert (two.engine, two.n_new, two.n_tiles, two.n_resumed) == ("ray", one.n_new, one.n_tiles, 0)
    assert_same_store(local, distributed)
    assert distributed.sql("select engine, n_slides_resumed from ingests").to_pylist() == [
        {"engine": "ray", "n_slides_resumed": 0}]
    assert distributed.stages() == []  # the stage goes with the commit
    again = ingest_cohort(distributed, manifest, expression=expression, engine=TWO_WORKERS)
    assert again.n_new == 0


@pytest.mark.slow
def test_killed_ray_ingest_shows_nothing_and_resumes_with_the_slides_left(tmp_path, local_ray):
    manifest, expression = write_cohort(tmp_path / "cohort", n_pairs=5, n_ref=2, n_query=2)
    store = new_store(tmp_path / "store")
    before = snapshot(store)
    args = [sys.executable, "-m", "hquery", "ingest", str(manifest), "--expression", str(expression),
            "--encoder", "demo-vit", "--engine", "ray", "--workers", "1", "--store", str(store.root), "--quiet"]
    done = subprocess.run(args, env={**ENV, "HQUERY_KILL_AT": "slide-staged:3"}, capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    reopened = Store.open(store.root)
    assert snapshot(reopened) == before  # three slides staged, none visible
    [stage] = reopened.stages()
    assert len(reopened.stage(stage.key).records()) == 3

    report = ingest_cohort(reopened, manifest, expression=expression, encoder="demo-vit", engine=TWO_WORKERS)
    assert (report.n_resumed, report.n_new) == (3, 9)
    assert report.n_tiles == 7 * 4  # every slide's tiles are in the table, 3 of the 7 slides from the stage
    counts = reopened.query("store_counts")[0]
    assert (counts.samples, counts.slides, counts.tiles, counts.ingests) == (9, 7, 28, 1)
    assert reopened.stages() == []

    fresh = new_store(tmp_path / "fresh")
    ingest_cohort(fresh, manifest, expression=expression, encoder="demo-vit")
    a, b = table_rows(fresh), table_rows(reopened)
    for name in a:
        np.testing.assert_allclose(b[name].get("embedding", 0), a[name].get("embedding", 0), atol=1e-5)
        assert b[name]["sample_id"] == a[name]["sample_id"]


def undecodable_png(path: Path) -> None:
    """Rewrite the PNG at ``path`` so its chunks still pass their checksums (``verify``) but the pixels cannot be
    decompressed: a corruption only the encoder meets."""
    data = path.read_bytes()
    start = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[start:start + 4])[0]
    garbage = bytes(np.random.default_rng(0).integers(0, 256, length, dtype=np.uint8))
    chunk = struct.pack(">I", length) + b"IDAT" + garbage + struct.pack(">I", zlib.crc32(b"IDAT" + garbage))
    path.write_bytes(data[:start] + chunk + data[start + 12 + length:])


@pytest.mark.slow
def test_a_slide_that_fails_on_a_worker_is_named_or_skipped(tmp_path, local_ray):
    manifest, expression = write_cohort(tmp_path / "cohort", n_pairs=4, n_ref=1, n_query=1)
    bad = sorted((tmp_path / "cohort" / "slides" / "S002").glob("*.png"))[1]
    undecodable_png(bad)
    store = new_store(tmp_path / "store")
    before = snapshot(store)
    with pytest.raises(InputError, match=r"sample S002: slide .*S002 failed on a Ray worker: .*" + bad.name):
        ingest_cohort(store, manifest, expression=expression, encoder="demo-vit", engine=TWO_WORKERS)
    assert snapshot(store) == before
    report = ingest_cohort(store, manifest, expression=expression, encoder="demo-vit", engine=TWO_WORKERS,
                           skip_bad_slides=True)
    assert list(report.skipped) == ["S002"] and bad.name in report.skipped["S002"]
    assert report.n_resumed == 4  # the failed run staged the good slides
    assert "S002" not in {r.sample_id for r in store.query("sample_hashes")}
    assert report.n_new == 5
    [row] = store.sql("select skipped from ingests").to_pylist()
    assert list(json.loads(row["skipped"])) == ["S002"]


def test_skip_bad_slides_on_the_local_path_leaves_out_what_its_checks_refuse(tmp_path):
    manifest, expression = write_cohort(tmp_path / "cohort", n_pairs=3, n_ref=1, n_query=0)
    truncated = sorted((tmp_path / "cohort" / "slides" / "S001").glob("*.png"))[0]
    truncated.write_bytes(truncated.read_bytes()[:40])
    store = new_store(tmp_path / "store")
    with pytest.raises(InputError, match=truncated.name):
        ingest_cohort(store, manifest, expression=expression)
    report = ingest_cohort(store, manifest, expression=expression, skip_bad_slides=True)
    assert list(report.skipped) == ["S001"] and report.n_new == 3 and "skipped S001" in report.summary()


def test_the_local_path_never_imports_ray(tmp_path):
    manifest, expression = write_cohort(tmp_path / "cohort", n_pairs=2, n_ref=1, n_query=0)
    code = ("import sys; from pathlib import Path; from hquery.cli import main; from hquery.store import Store; "
            "from hquery.ingest import ingest_cohort, init_store; "
            f"init_store(Path({str(tmp_path / 's')!r})); "
            f"ingest_cohort(Store.open({str(tmp_path / 's')!r}), {str(manifest)!r}, expression={str(expression)!r}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'lance_ray')))")
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_ray_options_refuse_what_cannot_run():
    with pytest.raises(InputError, match="--workers must be at least 1"):
        RayOptions(workers=0)
    with pytest.raises(InputError, match="--gpus-per-worker cannot be negative"):
        RayOptions(gpus_per_worker=-1)


def test_the_small_demo_ingested_on_ray_is_the_demo_store(small_demo, demo_store, tmp_path):
    """The issue's acceptance check: the whole small demo (reference library, pairs, query slides, spots) through
    the Ray engine, against the same cohort ingested by the local path (the ``demo_store`` fixture)."""
    store = new_store(tmp_path / "store")
    ingest_cohort(store, small_demo.reference_manifest, expression=small_demo.reference_expression,
                  name="demo_reference")
    report = ingest_cohort(store, small_demo.cohort_manifest, expression=small_demo.cohort_expression,
                           spots=small_demo.cohort_spots, name="demo", encoder="demo-vit",
                           engine=RayOptions(workers=2, cpus_per_worker=1))
    assert report.engine == "ray" and report.n_tiles > 1000
    assert_same_store(demo_store, store)
