"""The examples in the public docstrings run, in order, against a tiny store (as lancedb and timm test theirs)."""

import doctest
import importlib
import inspect

import pytest

from hquery.ingest import init_store
from tests.conftest import write_cohort

TINY_VIT = "random:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2&seed=0"

PURE = ["hquery.errors", "hquery.names", "hquery.genes", "hquery.stats", "hquery.parallel", "hquery.genesets", "hquery.ingest",
        "hquery.ingest.foundation_models",
        "hquery.retrieval.neighbours", "hquery.retrieval.routes", "hquery.evaluation.archetypes", "hquery.viewer.access",
        "hquery.training", "hquery.training.type_ridge"]
"""Modules whose examples need no store."""

WORKFLOW = ["hquery", "hquery.ingest.cohort.ingest_cohort", "hquery.training.alignment_trainer.train_alignment",
            "hquery.retrieval.index_builder.build_index", "hquery.retrieval.prompt.run_prompt",
            "hquery.retrieval.prompt.score_measured", "hquery.evaluation.association.associate",
            "hquery.gc.collect_garbage"]
"""A user's path through the library, each example building on the one before."""


def _run(obj, shared: dict) -> doctest.TestResults:
    """Run ``obj``'s examples in its module's namespace plus ``shared``, and carry what they define back."""
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    module = obj if inspect.ismodule(obj) else importlib.import_module(obj.__module__)
    tests = doctest.DocTestFinder(recurse=inspect.ismodule(obj)).find(obj, module=module)
    assert any(t.examples for t in tests), f"{obj!r} has no examples"
    for test in tests:
        test.globs.update(shared)
        runner.run(test, clear_globs=False)
        shared.update({k: v for k, v in test.globs.items() if k not in vars(module) or k in shared})
    return runner.summarize(verbose=False)


def _resolve(dotted: str):
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError:
        module, _, name = dotted.rpartition(".")
        return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("module", PURE)
def test_module_examples_run(module):
    assert _run(_resolve(module), {}).failed == 0


def test_workflow_examples_run_on_a_tiny_store(tmp_path):
    manifest, expression = write_cohort(tmp_path / "cohort", n_pairs=30, n_ref=0, n_query=6)
    init_store(tmp_path / "store")
    import hquery

    shared = {"store_dir": tmp_path / "store", "manifest": manifest, "expression": expression, "TINY_VIT": TINY_VIT}
    for dotted in WORKFLOW:
        assert _run(_resolve(dotted), shared).failed == 0, dotted
        shared.setdefault("store", hquery.connect(tmp_path / "store"))
