"""A disk that fills mid-ingest: a clear error naming the store, the store as it was, and a re-run that works once
there is room. The disk is a real one: a small tmpfs mounted for the test (it needs root; skipped elsewhere)."""

import os
import subprocess
import sys
import uuid

import pytest

from hquery.errors import StoreError
from hquery.ingest import ingest_cohort
from hquery.store import Store
from tests.conftest import snapshot, write_cohort


@pytest.fixture
def small_disk(tmp_path):
    """A 1.3 MB tmpfs; the test may grow it (``remount``)."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1300k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if os.geteuid() != 0 or made.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.strip()}")

    def remount(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)

    yield mount, remount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_ends_an_ingest_with_the_store_named_and_nothing_kept(small_disk, tmp_path):
    mount, remount = small_disk
    store = Store.init(mount / "store")
    manifest, expression = write_cohort(tmp_path / "cohort", n_pairs=40, n_ref=40, n_query=2,
                                        genes=[f"G{i}" for i in range(2000)])
    before = snapshot(store)
    with pytest.raises(StoreError) as caught:
        ingest_cohort(store, manifest, expression=expression, encoder="he-features")
    message = str(caught.value)
    assert f"the disk holding the store {store.root} is full" in message and "free when it began" in message
    assert "hquery gc" in message and "run the command again" in message
    assert snapshot(Store.open(store.root)) == before  # nothing half-written
    # the command line says the same, in one line
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = subprocess.run([sys.executable, "-m", "hquery", "ingest", str(manifest), "--expression", str(expression),
                          "--encoder", "he-features", "--store", str(store.root), "--quiet"],
                         capture_output=True, text=True, env=env)
    assert cli.returncode == 1 and "is full" in cli.stderr and "Traceback" not in cli.stderr, cli.stderr
    remount("64m")
    report = ingest_cohort(Store.open(store.root), manifest, expression=expression, encoder="he-features")
    assert report.n_new == 82 and Store.open(store.root).query("store_counts")[0].samples == 82
