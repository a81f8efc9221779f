"""`hquery sql`: every DuckDB type in every output format, and the limits that keep a reader from stalling writers."""

import json
import os
import subprocess
import sys
import time

import polars as pl
import pytest

from tests.cli.test_cli import run

EVERY_TYPE = """select true b, 1::tinyint ti, 2::utinyint uti, 3::smallint si, 4::usmallint usi, 5::integer i,
 6::uinteger ui, 7::bigint bi, 8::ubigint ubi, 170141183460469231731687303715884105727::hugeint hi, 12::uhugeint uhi,
 1.5::float f, 2.5::double d, 1.23::decimal(4,2) dec4, 1.23::decimal(38,10) dec38, date '2020-01-02' dt,
 time '12:34:56' tm, timestamp '2020-01-02 03:04:05' ts, timestamp_s '2020-01-02 03:04:05' tss,
 timestamp_ms '2020-01-02 03:04:05' tsms, timestamp_ns '2020-01-02 03:04:05' tsns,
 timestamptz '2020-01-02 03:04:05+00' tstz, timetz '12:34:56+01' ttz, interval 3 day iv,
 '00000000-0000-0000-0000-000000000001'::uuid u, 'ab'::blob bl, '0101'::bit bits, 'x' v, ['a', 'b'] l,
 [1, 2]::integer[2] arr, {'a': 1, 'b': 'x'} st, map {'k': 1} m,
 union_value(num := 2)::union(num integer, s varchar) un, '{"a": 1}'::json js,
 12345678901234567890123456789012345678901234567890::varint vi, null nul, 'NaN'::double nan, 'inf'::double inf,
 'x'::variant var, 'a'::enum_cast en"""
"""One column of each DuckDB type (``enum_cast`` is made an enum by the query below)."""
QUERY = "with t as (select 'a'::enum('a', 'b') as enum_cast) " + EVERY_TYPE.replace("'a'::enum_cast", "t.enum_cast") \
        + " from t"
N_COLUMNS = 40


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("sql") / "store"
    run("init", "--store", root)
    return root


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "parquet"])
def test_every_duckdb_type_renders_in_every_format(store, fmt, tmp_path):
    out = tmp_path / "rows.parquet"
    result = run("sql", QUERY, "--format", fmt, "--store", store, *(["--out", out] if fmt == "parquet" else []))
    if fmt == "csv":
        frame = pl.read_csv(result.output.encode(), infer_schema=False)
        assert frame.width == N_COLUMNS and frame["hi"][0] == "170141183460469231731687303715884105727"
        assert frame["bl"][0] == "0x6162" and json.loads(frame["st"][0]) == {"a": 1, "b": "x"}
    elif fmt == "json":
        [row] = json.loads(result.output)
        assert len(row) == N_COLUMNS and row["l"] == ["a", "b"] and row["en"] == "a" and row["nul"] is None
        assert row["hi"] == "170141183460469231731687303715884105727" and row["iv"] == "3 days"  # exact, readable
    elif fmt == "parquet":
        assert pl.read_parquet(out).width == N_COLUMNS
    else:
        assert "shape: (1, 40)" in result.output
    settings = run("sql", "select * from duckdb_settings()", "--format", fmt, "--store", store,
                   *(["--out", out] if fmt == "parquet" else []))
    assert settings.exit_code == 0


def test_a_query_past_its_time_is_stopped_and_a_waiting_writer_commits_soon_after(store, tmp_path):
    endless = "select count(*) from range(1000000000000) a"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    reader = subprocess.Popen([sys.executable, "-m", "hquery", "sql", endless, "--timeout", "4", "--store",
                               str(store)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    time.sleep(2.5)  # the reader holds the catalog
    gmt = tmp_path / "waiting.gmt"
    gmt.write_text("WAITING_SET\twritten while a query runs\tMKI67\tTOP2A\tCD8A\n")
    started = time.perf_counter()
    assert "added 1 gene sets" in run("genesets", "add", gmt, "--store", store).output
    waited = time.perf_counter() - started
    output, _ = reader.communicate(timeout=60)
    assert reader.returncode == 1 and "ran past its 4 s limit" in output and "Traceback" not in output
    assert waited < 30, f"the writer waited {waited:.0f} s for a reader limited to 4 s"


def test_a_query_past_its_memory_limit_is_refused_with_the_way_forward(store):
    big = "select a.range x, md5(a.range::varchar) h from range(3000000) a order by h"
    result = run("sql", big, "--memory-limit", "50MB", "--format", "json", "--store", store, ok=False)
    assert result.exit_code == 1 and "50MB memory limit" in result.output and "--memory-limit" in result.output
    assert "SET " not in result.output  # DuckDB's own advice names settings a user cannot change here
    result = run("sql", "select 1", "--memory-limit", "lots", "--store", store, ok=False)
    assert result.exit_code == 1 and "'lots' is not a size" in result.output
    assert run("sql", "select 42 x", "--memory-limit", "512MiB", "--format", "csv", "--store", store
               ).output.split() == ["x", "42"]
