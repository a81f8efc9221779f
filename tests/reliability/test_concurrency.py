"""Readers never fail because of a writer: prompts while an ingest runs, and many prompts at once."""

import os
import re
import subprocess
import sys

from tests.conftest import copy_store, write_cohort

ENC = "random:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2&seed=0"


def test_eight_prompts_answer_while_an_ingest_writes(indexed_store, tmp_path):
    store = copy_store(indexed_store, tmp_path / "store")
    manifest, expression = write_cohort(tmp_path / "more", n_pairs=30, n_ref=10, n_query=10, seed=3)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    hquery = [sys.executable, "-m", "hquery"]
    ingest = subprocess.Popen(hquery + ["ingest", str(manifest), "--expression", str(expression), "--name", "more",
                                        "--encoder", ENC, "--quiet", "--store", str(store.root)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prompts = [subprocess.Popen(hquery + ["prompt", "--genes", gene_set, "--format", "csv",
                                          "--out", str(tmp_path / f"p{i}.csv"), "--store", str(store.root)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i, gene_set in enumerate(["G2M", "HYPOXIA", "E2F", "G2M", "MYC_TARGETS_V1", "HYPOXIA",
                                             "GLYCOLYSIS", "G2M"])]
    failed, answered = [], set()
    for i, proc in enumerate(prompts):
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            failed.append((i, err[-400:]))
        answered |= set(re.findall(r"run (prompt_\w+):", err))
    _, err = ingest.communicate(timeout=300)
    assert ingest.returncode == 0, err[-800:]
    assert not failed, failed
    # every answer the user saw was recorded (a run id printed but missing would be a lost write)
    recorded = {r["run_id"] for r in store.sql("select run_id from prompt_runs").to_pylist()}
    assert len(answered) == 8 and recorded == answered, (sorted(answered), sorted(recorded))
    assert store.sql("select count(*) n from samples where cohort = 'more'").to_pylist()[0]["n"] == 50
