"""Readers under writers: 8 clients prompt and query while an ingest and a refresh loop write, against idle.

The store is the small demo (world A, ``he-features``), trained and indexed.
Eight client processes each loop for the phase's length: a recorded prompt
(``run_prompt``, HALLMARK_G2M, the default route) then an ``hquery sql`` query,
timing every prompt and counting failures. Two phases, in one run:

* idle (the baseline): the clients alone;
* writes: the same clients while a writer process ingests the demo's second
  batch of pairs, then refreshes (``refresh --force``) over and over.

Reported per phase: prompts answered and failed, queries failed, and the
prompt latency p50/p99 (writes against idle). The goal is 0 failed.

Usage::

    python benchmarks/stress.py [--seconds 120] [--idle-seconds 30] [--clients 8] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CLIENT = """
import json, sys, time
from hquery.genesets import resolve_prompts
from hquery.retrieval import run_prompt
from hquery.store import Store

store, seconds, out = Store.open(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
latency, failed, queries_failed, errors = [], 0, 0, []
stop = time.monotonic() + seconds
while time.monotonic() < stop:
    started = time.perf_counter()
    try:
        run_prompt(store, resolve_prompts(store, ["HALLMARK_G2M"]))
        latency.append(time.perf_counter() - started)
    except Exception as exc:
        failed += 1
        errors.append(f"{type(exc).__name__}: {exc}"[:200])
    try:
        store.sql("select cancer_type, avg(score) from prompt_results group by 1")
    except Exception as exc:
        queries_failed += 1
        errors.append(f"sql {type(exc).__name__}: {exc}"[:200])
json.dump({"latency": latency, "failed": failed, "queries_failed": queries_failed, "errors": errors[:5]},
          open(out, "w"))
"""

WRITER = """
import sys, time
from hquery.ingest import ingest_cohort
from hquery.pipelines.refresh import refresh
from hquery.store import Store

store, seconds = Store.open(sys.argv[1]), float(sys.argv[2])
stop = time.monotonic() + seconds
ingest_cohort(store, sys.argv[3], expression=sys.argv[4], name="demo")
n = 0
while time.monotonic() < stop:
    refresh(store, force=True)
    n += 1
print(n)
"""


def build(root: Path) -> Path:
    from hquery.demo import generate_demo_cohort
    from hquery.pipelines.demo import ingest_demo_cohort
    from hquery.retrieval import build_index
    from hquery.training import train_alignment

    files = generate_demo_cohort(root / "data", size="small", seed=0)
    store = ingest_demo_cohort(root / "store", files, "he-features", spots=False)
    train_alignment(store)
    build_index(store)
    return files


def phase(store: Path, seconds: float, clients: int, scratch: Path, writer: list[str] | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    outs = [scratch / f"client{i}.json" for i in range(clients)]
    procs = [subprocess.Popen([sys.executable, "-c", CLIENT, str(store), str(seconds), str(out)], env=env)
             for out in outs]
    write = subprocess.Popen([sys.executable, "-c", WRITER, str(store), str(seconds), *writer], env=env,
                             stdout=subprocess.PIPE, text=True) if writer else None
    for proc in procs:
        proc.wait()
    refreshes = int(write.communicate()[0].strip() or 0) if write else 0
    if write and write.returncode:
        raise SystemExit(f"the writer failed ({write.returncode})")
    results = [json.loads(out.read_text()) for out in outs]
    latency = sorted(x for r in results for x in r["latency"])
    pick = lambda q: latency[min(len(latency) - 1, int(q * len(latency)))] if latency else float("nan")
    return {"answered": len(latency), "failed": sum(r["failed"] for r in results),
            "queries_failed": sum(r["queries_failed"] for r in results), "p50": pick(0.5), "p99": pick(0.99),
            "refreshes": refreshes, "errors": [e for r in results for e in r["errors"]][:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--root", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or Path(scratch)
        files = build(root)
        store = root / "store"
        idle = phase(store, args.idle_seconds, args.clients, root)
        busy = phase(store, args.seconds, args.clients, root,
                     [str(files.later_manifest), str(files.later_expression)])
    for name, result in (("idle", idle), ("writes", busy)):
        print(f"{name:7s} {result['answered']} prompts answered, {result['failed']} failed, "
              f"{result['queries_failed']} queries failed; prompt latency p50 {result['p50']:.2f}s "
              f"p99 {result['p99']:.2f}s" + (f"; {result['refreshes']} refreshes beside them" if name == "writes"
                                               else ""))
        for error in result["errors"]:
            print(f"        e.g. {error}")
    print(f"during writes against idle: p50 {busy['p50'] / idle['p50']:.2f}x, p99 {busy['p99'] / idle['p99']:.2f}x")


if __name__ == "__main__":
    main()
