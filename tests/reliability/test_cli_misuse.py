"""Command-line misuse gets a usage error before any work is done or recorded, never a traceback."""

import json

import polars as pl
import pytest
from click.testing import CliRunner

from hquery.cli import main
from tests.conftest import copy_store


@pytest.fixture(scope="module")
def indexed(indexed_store, tmp_path_factory):
    return copy_store(indexed_store, tmp_path_factory.mktemp("misuse") / "store")


def hquery(store, *args):
    return CliRunner().invoke(main, [*map(str, args), "--store", str(store.root)])


def runs(store) -> int:
    return store.sql("select count(*) n from prompt_runs").to_pylist()[0]["n"]


@pytest.mark.parametrize("args, message", [
    (("--out", "{tmp}"), "is a folder"),
    (("--out", "{tmp}/missing/scores.csv"), "does not exist"),
    (("--samples", ""), "names no sample"),
    (("--samples", " , "), "names no sample"),
    (("--min-genes", "0"), "0 is not in the range"),
])
def test_prompt_misuse_is_a_usage_error_and_records_nothing(indexed, tmp_path, args, message):
    before = runs(indexed)
    result = hquery(indexed, "prompt", "--genes", "G2M", *(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert runs(indexed) == before


def test_a_set_with_no_gene_in_the_library_is_named(indexed):
    result = hquery(indexed, "prompt", "--genes", "NOTAGENE1,NOTAGENE2", "--min-genes", "1")
    assert result.exit_code == 1 and "only 0 of its 2 genes" in result.output and "NOTAGENE1" in result.output


def test_a_k_beyond_the_library_is_said_and_recorded_as_used(indexed):
    result = hquery(indexed, "prompt", "--genes", "G2M", "--method", "softknn", "--k", "100000", "--match", "none")
    assert result.exit_code == 0, result.output
    assert "k=100000 is more than the" in result.output
    recorded = indexed.sql("select k from prompt_runs order by created_at desc limit 1").to_pylist()[0]["k"]
    assert recorded < 100000 and f"used k={recorded}" in result.output


def test_sql_writes_list_columns_as_json_text(indexed, tmp_path):
    out = tmp_path / "members.csv"
    result = hquery(indexed, "sql", "select name, members from gene_sets order by name limit 2", "--format", "csv",
                    "--out", out)
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(out)
    assert isinstance(json.loads(frame["members"][0]), list)
    assert hquery(indexed, "sql", "select members from gene_sets limit 1").exit_code == 0
