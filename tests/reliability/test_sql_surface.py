"""User SQL (``hquery sql``, ``--where``, ``--neighbours-where``) reads the store and nothing else, and writes nothing."""

import pytest

from hquery.errors import HqueryError
from hquery.ingest import ingest_cohort
from tests.conftest import snapshot, write_cohort

ENC = "random:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2&seed=0"


@pytest.fixture
def filled(store, tmp_path):
    manifest, expression = write_cohort(tmp_path / "c", n_pairs=3, n_ref=3, n_query=1)
    ingest_cohort(store, manifest, expression=expression, encoder=ENC, device="cpu")
    return store


def test_queries_see_the_catalog_views_and_lance_tables(filled):
    assert filled.sql("select count(*) n from samples").to_pylist() == [{"n": 7}]
    assert filled.sql("select count(*) n from tile_embeddings").to_pylist() == [{"n": 16}]
    assert filled.sql("select role, count(*) n from sample_roles group by 1 order by 1").num_rows == 3
    assert filled.sql("describe samples").num_rows > 3 and filled.sql("explain select 1").num_rows


@pytest.mark.parametrize("text", [
    "copy (select 'x' a) to '{root}/hquery-store.json'",
    "copy samples to '{root}/lance/x.csv'",
    "export database '{root}/exported'",
    "attach '{root}/catalog.duckdb' as again",
    "attach '{root}/other.duckdb' as other (read_write)",
    "select * from read_csv('/etc/passwd')",
    "select * from glob('/root/*')",
    "select * from read_text('/etc/hostname')",
    "install httpfs",
    "load httpfs",
    "set enable_external_access = true",
    "select 1; copy (select 1) to '{root}/x.csv'",
    "create table evil as select 1",
    "drop table samples",
    "delete from samples",
    "update settings set value = 'x'",
    "checkpoint",
])
def test_nothing_outside_a_read_only_query_runs(filled, text):
    root = filled.root
    before = snapshot(filled), sorted(p.name for p in root.iterdir()), (root / "hquery-store.json").read_bytes()
    with pytest.raises(HqueryError):
        filled.sql(text.format(root=root))
    assert (snapshot(filled), sorted(p.name for p in root.iterdir()), (root / "hquery-store.json").read_bytes()) \
        == before


@pytest.mark.parametrize("predicate", [
    "1=1); copy (select 1) to '{root}/x.csv'; select (1",
    "sample_id in (select column0 from read_csv('/etc/passwd'))",
    "cancer_type = 'BRCA'; drop table samples",
])
def test_sample_filters_are_one_read_only_condition(filled, predicate):
    before = snapshot(filled), sorted(p.name for p in filled.root.iterdir())
    with pytest.raises(HqueryError, match="not one valid SQL condition"):
        filled.samples_where(predicate.format(root=filled.root))
    assert (snapshot(filled), sorted(p.name for p in filled.root.iterdir())) == before
    assert filled.samples_where("cancer_type = 'BRCA'") == ["S000", "S002", "S006"]
