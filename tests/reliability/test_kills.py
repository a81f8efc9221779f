"""Each command killed (SIGKILL, ``$HQUERY_KILL_AT``) at each step of each commit it makes: the store then
reads exactly as before or exactly as after, still answers prompts, and the command run again completes."""

import os
import shutil
import subprocess
import sys

import pytest

from hquery.genesets import resolve_prompts
from hquery.records import index_record, model_record
from hquery.retrieval import run_prompt
from hquery.store import KILL_POINTS, Store
from tests.conftest import snapshot, write_cohort

COMMIT_STEPS = [p for p in KILL_POINTS if p.startswith("commit-")]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def hquery(store: Store | os.PathLike, *args, kill_at: str | None = None) -> int:
    root = store.root if isinstance(store, Store) else store
    env = {**ENV, **({"HQUERY_KILL_AT": kill_at} if kill_at else {})}
    done = subprocess.run([sys.executable, "-m", "hquery", *args, "--store", str(root)], env=env,
                          capture_output=True, text=True)
    assert done.returncode in (0, -9), done.stderr
    return done.returncode


def state(store: Store) -> dict:
    """What a reader sees, version ids aside (each build makes new ones): rows, settings, live versions."""
    live = store.sql("select (select count(*) from models where retired_at is null) models, "
                     "(select count(*) from index_versions) indexes, "
                     "(select count(*) from settings where key in ('alignment_model', 'current_index')) pointers")
    return {**snapshot(store), "versions": live.to_pylist()[0]}


def serves(store: Store) -> bool:
    """The current model and index load and a prompt answers from them."""
    if store.pointer("current_index") is None:
        return True
    model_record(store, "alignment", index_record(store).model_version)
    return run_prompt(store, resolve_prompts(store, ["MKI67,TOP2A,CD8A,COL1A1,VIM"]), method="softknn",
                      record=False).results.num_rows > 0


def kill_every_commit(store: Store, *args) -> list[str]:
    """Kill the command at each commit step of each of its writes in turn, on the same store (so each run also
    recovers from the last kill); check the store between kills; then let it finish. Returns where it died."""
    before = state(store)
    died, changed = [], False
    for nth in range(1, 10):
        killed_here = False
        for step in COMMIT_STEPS:
            if hquery(store, *args, kill_at=f"{step}:{nth}") == 0:
                return died  # fewer than nth writes: this run finished
            killed_here = True
            died.append(f"{step}:{nth}")
            reopened = Store.open(store.root)
            now = state(reopened)
            assert serves(reopened), f"no prompt answers after a kill at {step}:{nth} of {args}"
            if step == "commit-catalog":
                changed = changed or now != before
            else:  # nothing of this write is visible yet
                assert now == before or changed, f"a kill at {step}:{nth} of {args} left a change"
        assert killed_here
    raise AssertionError(f"{args} kept writing")


@pytest.mark.slow
def test_every_command_killed_at_every_commit_step_leaves_a_store_that_reads_and_reruns(tmp_path):
    manifest, expression = write_cohort(tmp_path / "c1", n_pairs=16, n_ref=6, n_query=2)
    later, later_expression = write_cohort(tmp_path / "c2", n_pairs=8, n_ref=0, n_query=0, seed=1,
                                         prefix="B")
    root = tmp_path / "store"

    assert hquery(root, "init", kill_at="init-built") == -9
    assert not root.exists() and len(list(tmp_path.glob(".store.init-*"))) == 1
    assert hquery(root, "init") == 0
    assert Store.is_store(root) and list(tmp_path.glob(".store.init-*")) == []  # the killed build is cleared
    store = Store.open(root)

    ingest = ("ingest", str(manifest), "--expression", str(expression), "--encoder", "he-features", "--quiet")
    clean = Store.open(shutil.copytree(root, tmp_path / "clean"))
    assert hquery(clean, *ingest) == 0
    assert kill_every_commit(store, *ingest)
    assert snapshot(Store.open(root)) == snapshot(clean)

    train = ("train", "align", "--epochs", "5", "--quiet")
    assert kill_every_commit(store, *train) and model_record(store, "alignment")
    assert kill_every_commit(store, "index") and serves(store)

    served = store.pointer("current_index")
    assert hquery(store, "ingest", str(later), "--expression", str(later_expression), "--name", "c1",
                  "--quiet") == 0
    died = kill_every_commit(store, "refresh")
    assert len(died) >= 2 * len(COMMIT_STEPS), died  # the candidate, the deployable model, the index
    refreshes = store.sql("select status, reason from refresh_runs order by started_at").to_pylist()
    assert "interrupted" in {r["status"] for r in refreshes} and serves(store)
    # killed once its index was committed, a refresh has promoted; the re-run then finds nothing new
    promoted = [r for r in refreshes if r["status"] == "promoted" or "went into service" in (r["reason"] or "")]
    assert (store.pointer("current_index") != served) == bool(promoted)
    assert refreshes[-1]["status"] in ("promoted", "rejected", "nothing_new")
    # and gc, which deletes: killed at any step, what is served stays; run again, it finishes the job
    assert kill_every_commit(store, "gc", "--keep", "1", "--grace", "0") and serves(store)
    assert "reclaimable: 0 B" in subprocess.run(
        [sys.executable, "-m", "hquery", "status", "--store", str(store.root)], env=ENV, capture_output=True,
        text=True).stdout
