"""The one-way layers hold, and the check catches what it is there to catch (tools/lint_imports.py)."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "lint_imports.py"
CORE = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]["hquery"]


def check(source: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), "--source", str(source)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of the sources the check reads (every folder pyproject maps into hquery), to break on purpose."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for folder in mapping.values():
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"),
                        dirs_exist_ok=True)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_layers_hold():
    result = check(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_training_importing_retrieval_breaks_the_contract(checkout):
    with open(checkout / "training" / "pairs.py", "a") as fh:
        fh.write("\n\ndef _back_edge():\n    from hquery.retrieval.index import RNAIndex  # hidden in a function\n"
                 "    return RNAIndex\n")
    result = check(checkout)
    assert result.returncode == 1
    assert "hquery.training is not allowed to import hquery.retrieval" in result.stdout
    assert "hquery.training.pairs -> hquery.retrieval.index" in result.stdout


def test_core_importing_a_stage_breaks_the_contract(checkout):
    with open(checkout / CORE / "library.py", "a") as fh:
        fh.write("\nfrom hquery.ingest.manifest import read_manifest  # noqa: E402\n")
    result = check(checkout)
    assert result.returncode == 1 and "hquery.library is not allowed to import hquery.ingest" in result.stdout


def test_a_new_module_needs_a_layer(checkout):
    (checkout / CORE / "orphan.py").write_text("X = 1\n")
    result = check(checkout)
    assert result.returncode == 1 and "hquery.orphan" in result.stdout


def test_a_light_late_import_is_refused(checkout):
    with open(checkout / "ingest" / "manifest.py", "a") as fh:
        fh.write("\n\ndef _late():\n    from hquery.genes import normalise_symbol\n    return normalise_symbol\n")
    result = check(checkout)
    assert result.returncode == 1
    assert "hquery/ingest/manifest.py" in result.stdout and "imports hquery.genes inside _late(); it is light" \
        in result.stdout
