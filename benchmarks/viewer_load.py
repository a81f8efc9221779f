"""The viewer under load: 20 clients browse slides and deep-zoom tiles while tile-level prompts run, against the
same clients browsing alone.

The store is the small demo (world A, ``he-features``), trained and indexed;
the viewer is a real ``hquery view`` process on loopback. Each client thread
loops for the phase's length: the slide list, a slide's DZI, four of its
deep-zoom tiles and its tile scores (a 404 before any prompt scored it is an
answer too). In the second phase one more client starts a tile-level prompt on
a slide after another (``POST /api/prompts``, waiting for each; a 429 when the
queue is full is an answer, and it tries again).

Reported per phase: requests, answered (any HTTP status but 5xx), failed
(5xx, refused or timed out connections), browse latency p50/p95; then p95 with
prompts against alone. The goal is 0 failed.

Usage::

    python benchmarks/viewer_load.py [--seconds 30] [--clients 20] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


def build(root: Path) -> Path:
    from hquery.demo import generate_demo_cohort
    from hquery.pipelines.demo import ingest_demo_cohort
    from hquery.retrieval import build_index
    from hquery.training import train_alignment

    files = generate_demo_cohort(root / "data", size="small", seed=0)
    store = ingest_demo_cohort(root / "store", files, "he-features", spots=False)
    train_alignment(store)
    build_index(store)
    return root / "store"


def get(url: str, timeout: float = 30.0) -> tuple[int | None, float, bytes]:
    """Status (``None`` when no answer came), seconds, body."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, time.perf_counter() - started, answer.read()
    except urllib.error.HTTPError as answer:
        return answer.code, time.perf_counter() - started, answer.read()
    except OSError:
        return None, time.perf_counter() - started, b""


def browse(base: str, slides: list[str], stop: float, out: dict) -> None:
    rng = random.Random(len(out))
    while time.monotonic() < stop:
        sample, (width, height) = rng.choice(slides)
        top = max(1, max(width, height) - 1).bit_length()  # the full-resolution DeepZoom level
        urls = [f"{base}/api/slides", f"{base}/api/slides/{sample}.dzi",
                *(f"{base}/api/slides/{sample}_files/{level}/0_0.jpeg" for level in range(max(0, top - 3), top + 1)),
                f"{base}/api/slides/{sample}/tiles?gene_set=HALLMARK_HYPOXIA"]
        for url in urls:
            status, seconds, _ = get(url)
            out["latency"].append(seconds)
            out["failed" if status is None or status >= 500 else "answered"] += 1


def prompt(base: str, slides: list[str], stop: float, out: dict) -> None:
    rng = random.Random(7)
    while time.monotonic() < stop:
        body = json.dumps({"sample_id": rng.choice(slides)[0], "genes": "HYPOXIA"}).encode()
        request = urllib.request.Request(f"{base}/api/prompts", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                job = json.loads(answer.read())["job"]
        except urllib.error.HTTPError as answer:
            out["queue_full" if answer.code == 429 else "prompts_failed"] += 1
            time.sleep(1.0)
            continue
        except OSError:
            out["prompts_failed"] += 1
            continue
        while time.monotonic() < stop + 120:
            status, _, text = get(f"{base}/api/prompts/{job}")
            if status != 200:
                out["prompts_failed"] += 1
                break
            state = json.loads(text)["state"]
            if state != "running":
                out["prompts_done" if state == "done" else "prompts_failed"] += 1
                break
            time.sleep(0.5)


def phase(base: str, slides: list[str], seconds: float, clients: int, prompts: bool) -> dict:
    stop = time.monotonic() + seconds
    results = [{"latency": [], "answered": 0, "failed": 0} for _ in range(clients)]
    prompted = {"prompts_done": 0, "prompts_failed": 0, "queue_full": 0}
    threads = [threading.Thread(target=browse, args=(base, slides, stop, r)) for r in results]
    if prompts:
        threads.append(threading.Thread(target=prompt, args=(base, slides, stop, prompted)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latency = sorted(x for r in results for x in r["latency"])
    pick = lambda q: latency[min(len(latency) - 1, int(q * len(latency)))] if latency else float("nan")
    return {"requests": len(latency), "answered": sum(r["answered"] for r in results),
            "failed": sum(r["failed"] for r in results), "p50": pick(0.5), "p95": pick(0.95), **prompted}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--root", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or Path(scratch)
        store = build(root)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "hquery", "view", "--port", str(port), "--store", str(store)],
                                  env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL)
        try:
            for _ in range(300):
                status, _, text = get(f"{base}/api/slides", timeout=5)
                if status == 200:
                    break
                time.sleep(0.2)
            else:
                raise SystemExit("the viewer did not start")
            slides = [(s["sample_id"], (s["width"], s["height"])) for s in json.loads(text)["slides"]][:40]
            alone = phase(base, slides, args.seconds, args.clients, prompts=False)
            busy = phase(base, slides, args.seconds, args.clients, prompts=True)
        finally:
            server.terminate()
            server.wait(30)
    for name, r in (("alone", alone), ("prompts", busy)):
        print(f"{name:8s} {args.clients} clients, {r['requests']} requests: {r['answered']} answered, {r['failed']} "
              f"failed; latency p50 {r['p50'] * 1000:.0f} ms, p95 {r['p95'] * 1000:.0f} ms"
              + (f"; {r['prompts_done']} tile prompts done beside them ({r['queue_full']} told the queue was "
                 f"full, {r['prompts_failed']} failed)" if name == "prompts" else ""))
    print(f"with prompts running against alone: p95 {busy['p95'] / alone['p95']:.2f}x")


if __name__ == "__main__":
    main()
