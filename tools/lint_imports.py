"""Check hquery's one-way layers with import-linter, as the package installs.

Each root folder is one layer (``core/``, ``ingest/``, ``training/``,
``retrieval/``, ``evaluation/``, ``apps/*``, ``cli/``, plus ``demo/`` and
``sql/``) and installs under the ``hquery`` import root through
``[tool.setuptools.package-dir]``. An editable install maps them with an import
hook, which grimp (import-linter's graph builder) does not follow. So this
script lays the sources out as a wheel would (``hquery/ingest/...``) in a
temporary folder and runs ``lint-imports`` on that tree with the contracts from
``pyproject.toml``. Function-level imports count like any other.

Usage::

    python tools/lint_imports.py            # the contracts; exit 1 when one is broken
    python tools/lint_imports.py --graph    # also print imports between stage packages
    python tools/lint_imports.py --source DIR   # check another checkout (tests use a copy)
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "peft", "faiss", "ray", "lance_ray")
"""Third-party modules slow enough to import that a function may import them (or a module that does) late."""


def assemble(source: Path, dest: Path) -> Path:
    """Copy the Python sources of ``source`` into ``dest/hquery`` in their installed layout."""
    config = tomllib.loads((source / "pyproject.toml").read_text())
    mapping = config["tool"]["setuptools"]["package-dir"]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "data", "*.sql")
    shutil.copytree(source / mapping.pop("hquery"), dest / "hquery", ignore=ignore)
    for package, folder in mapping.items():
        shutil.copytree(source / folder, dest / package.replace(".", "/"), ignore=ignore, dirs_exist_ok=True)
    return dest / "hquery"


def stage_graph(tree: Path) -> Counter:
    """Import statements from one hquery subpackage (or core module) to another, counted."""
    import grimp

    sys.path.insert(0, str(tree))
    try:
        graph = grimp.build_graph("hquery", cache_dir=None)
    finally:
        sys.path.remove(str(tree))
    stage = lambda module: module.split(".")[1] if module.count(".") else "hquery"  # noqa: E731
    edges: Counter = Counter()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            details = graph.get_import_details(importer=importer, imported=imported)
            a, b = stage(importer), stage(imported)
            if a != b:
                edges[a, b] += max(1, len(details))
    return edges


def _module_file(tree: Path, module: str) -> Path | None:
    base = tree.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _top_level_imports(path: Path) -> list[str]:
    """Modules imported at module level (not inside a function or method)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.append(child.module)
                found.extend(f"{child.module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def late_light_imports(tree: Path) -> list[str]:
    """Function-level imports of hquery modules that import nothing heavy, even transitively.

    Such an import hides nothing worth waiting for, so it belongs at the top of
    the module, where the layers contract and a reader see it. One of a module
    that needs torch (or another of :data:`HEAVY`) may stay inside the function.
    """
    heavy_cache: dict[str, bool] = {}

    def is_heavy(module: str, seen: frozenset = frozenset()) -> bool:
        if module.split(".")[0] in HEAVY:
            return True
        if not module.startswith("hquery") or module in seen:
            return False
        if module not in heavy_cache:
            path = _module_file(tree, module)
            parent = module.rpartition(".")[0]  # importing a module runs its package's __init__ first
            heavy_cache[module] = (bool(parent) and is_heavy(parent, seen | {module})) or (bool(path) and any(
                is_heavy(m, seen | {module}) for m in _top_level_imports(path)))
        return heavy_cache[module]

    problems = []
    for path in sorted((tree / "hquery").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module and inner.module.startswith("hquery"):
                    if not is_heavy(inner.module):
                        where = path.relative_to(tree).as_posix()
                        problems.append(f"{where}:{inner.lineno} imports {inner.module} inside {node.name}(); "
                                        "it is light, so import it at the top of the module")
    return sorted(set(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout to check [default: this one]")
    parser.add_argument("--graph", action="store_true", help="print the imports between stage packages")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hquery-layers-") as tmp:
        tree = Path(tmp)
        assemble(args.source, tree)
        if args.graph:
            for (a, b), n in sorted(stage_graph(tree).items()):
                print(f"{a:>12} -> {b:<12} {n}")
        lint = Path(sys.executable).with_name("lint-imports")
        env = {**os.environ, "PYTHONPATH": str(tree)}
        returncode = subprocess.run([str(lint), str(args.source / "pyproject.toml"), "--no-cache"],
                                    env=env, cwd=tree).returncode
        late = late_light_imports(tree)
        for line in late:
            print(line)
        print(f"function-level imports of light hquery modules: {len(late)}")
        return returncode or (1 if late else 0)


if __name__ == "__main__":
    sys.exit(main())
