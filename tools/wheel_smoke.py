"""Build hquery's wheel, install it into a fresh venv, and use it as a user would: from a temporary folder and
from the checkout.

A regular install must work wherever a process starts: in the checkout too, where ``python -m hquery`` and
each Ray worker begin. So each run goes init -> ingest the small demo -> train align -> index -> prompt ->
the viewer's API over HTTP, from its own working directory, and the checkout's run ingests the demo's second
batch on Ray as well. Every hquery import must resolve inside the wheel's venv, never to the checkout.

The fresh venv holds the wheel alone; its third-party packages are the build venv's, reached through a
``.pth`` line (torch and its CUDA libraries are 7 GB and 4 minutes to install twice). A ``.pth`` path line
does not run the ``.pth`` files of the folder it adds, so the build venv's editable hquery stays invisible
there, and the first check below proves it.

Usage::

    python tools/wheel_smoke.py              # build, install, run both; exit 1 on the first failure
    python tools/wheel_smoke.py --keep DIR   # leave the wheel, venv and stores in DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str], cwd: Path, env: dict, timeout: float = 900) -> str:
    """Run ``argv`` in ``cwd``; its output on success, else exit with it."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    shown = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv))
    print(f"  [{time.perf_counter() - started:5.1f}s] {shown}  (in {cwd})", flush=True)
    if done.returncode:
        sys.exit(f"wheel smoke: `{shown}` in {cwd} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def build_wheel(out: Path) -> Path:
    """``python -m build --wheel`` of the checkout, without network (the build venv's setuptools)."""
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)], ROOT,
        dict(os.environ), timeout=600)
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    (wheel,) = out.glob("hquery-*.whl")
    return wheel


def fresh_venv(folder: Path, wheel: Path) -> Path:
    """A new venv holding ``wheel``, its dependencies borrowed from this interpreter's site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "hquery-smoke-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: the build venv's editable hquery is visible through the .pth line; pip must neither
    # count it as installed nor touch it
    run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--ignore-installed",
         str(wheel)], folder, dict(os.environ))
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_viewer(hquery: Path, store: Path, cwd: Path, env: dict) -> None:
    """``hquery view`` serves the store: the slide list, the gene sets and one slide's tile scores."""
    port = free_port()
    server = subprocess.Popen([str(hquery), "view", "--store", str(store), "--port", str(port)], cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                slides = json.load(urllib.request.urlopen(f"{base}/api/slides", timeout=5))
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit(f"wheel smoke: hquery view exited {server.returncode}:\n{server.stdout.read()}")
                time.sleep(0.2)
        else:
            sys.exit("wheel smoke: hquery view did not answer within 40 s")
        rows = slides["slides"] if isinstance(slides, dict) else slides
        assert rows, f"the viewer lists no slides: {slides}"
        sets = json.load(urllib.request.urlopen(f"{base}/api/gene-sets", timeout=5))
        assert "HALLMARK_G2M_CHECKPOINT" in json.dumps(sets), "the viewer lists no HALLMARK_G2M_CHECKPOINT"
        page = urllib.request.urlopen(f"{base}/", timeout=5).read().decode()
        assert "<html" in page.lower(), "the viewer's page is not HTML"
        print(f"  viewer: {len(rows)} slides, the gene sets and the page answer on 127.0.0.1:{port}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


def smoke(python: Path, cwd: Path, work: Path, demo, *, ray: bool) -> None:
    """init -> ingest -> train align -> index -> prompt -> viewer, every command started in ``cwd``."""
    bin_dir = python.parent
    hquery = bin_dir / "hquery"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    store = work / "store"
    where = run([str(python), "-c", "import hquery, hquery.retrieval, hquery.cli; print(hquery.__file__)"], cwd, env)
    assert Path(where.strip()).is_relative_to(python.parents[1]), f"hquery imported from {where.strip()}"
    assert "Usage" in run([str(python), "-m", "hquery", "--help"], cwd, env)
    run([str(hquery), "init", "--store", str(store)], cwd, env)
    run([str(hquery), "ingest", str(demo.reference_manifest), "--expression", str(demo.reference_expression),
         "--name", "demo_reference", "--quiet", "--store", str(store)], cwd, env)
    run([str(hquery), "ingest", str(demo.cohort_manifest), "--expression", str(demo.cohort_expression),
         "--name", "demo", "--quiet", "--store", str(store)], cwd, env)
    if ray:
        run([str(hquery), "ingest", str(demo.later_manifest), "--expression", str(demo.later_expression),
             "--name", "demo", "--engine", "ray", "--workers", "1", "--quiet", "--store", str(store)], cwd, env)
    run([str(hquery), "train", "align", "--epochs", "40", "--quiet", "--store", str(store)], cwd, env)
    run([str(hquery), "index", "--store", str(store)], cwd, env)
    answer = run([str(hquery), "prompt", "--genes", "HALLMARK_G2M", "--limit", "3", "--store", str(store)], cwd, env)
    assert "HALLMARK_G2M_CHECKPOINT" in answer, answer
    check_viewer(hquery, store, cwd, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and leave it [default: a temporary one]")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    work = args.keep or Path(tempfile.mkdtemp(prefix="hquery-wheel-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print("wheel smoke: build the wheel and install it into a fresh venv", flush=True)
        wheel = build_wheel(work / "dist")
        python = fresh_venv(work / "venv", wheel)
        print(f"  {wheel.name} in {work / 'venv'}", flush=True)
        generate = ("import dataclasses, json, sys; from pathlib import Path; "
                    "from hquery.demo import generate_demo_cohort; "
                    "files = generate_demo_cohort(Path(sys.argv[1]), size='small', seed=0); "
                    "print(json.dumps({k: str(v) for k, v in dataclasses.asdict(files).items()}))")
        files = run([str(python), "-c", generate, str(work / "demo")], work, {**os.environ, "HF_HUB_OFFLINE": "1"})
        demo = argparse.Namespace(**json.loads(files.strip().splitlines()[-1]))
        outside = work / "elsewhere"
        outside.mkdir(exist_ok=True)
        print("wheel smoke: from a temporary folder", flush=True)
        smoke(python, outside, work / "from-tmp", demo, ray=False)
        print("wheel smoke: from the checkout (with a Ray ingest)", flush=True)
        smoke(python, ROOT, work / "from-checkout", demo, ray=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"wheel smoke: passed in {time.perf_counter() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
