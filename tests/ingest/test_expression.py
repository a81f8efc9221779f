import gzip

import numpy as np
import polars as pl
import pytest

from hquery.errors import InputError
from hquery.genes import read_hgnc_aliases, shipped_aliases
from hquery.ingest.expression import read_expression


def _write(path, rows, sep=","):
    pl.DataFrame(rows).write_csv(path, separator=sep)
    return path


def test_counts_become_log1p_cpm(tmp_path):
    f = _write(tmp_path / "e.csv", [{"sample_id": "a", "TP53": 10, "MKI67": 30}, {"sample_id": "b", "TP53": 0, "MKI67": 5}])
    m = read_expression(f)
    assert m.sample_ids == ["a", "b"] and m.genes == ["TP53", "MKI67"]
    expected = np.log1p(np.array([[10, 30], [0, 5]]) / np.array([[40], [5]]) * 1e6)
    np.testing.assert_allclose(m.values, expected, rtol=1e-6)


def test_tpm_and_log_units(tmp_path):
    f = _write(tmp_path / "e.csv", [{"sample_id": "a", "TP53": 3.0, "MKI67": 1.0}])
    np.testing.assert_allclose(read_expression(f, units="tpm").values, np.log1p([[3.0, 1.0]]), rtol=1e-6)
    np.testing.assert_allclose(read_expression(f, units="log").values, [[3.0, 1.0]], rtol=1e-6)


def test_aliases_and_duplicate_symbols_are_summed(tmp_path):
    f = _write(tmp_path / "e.tsv", [{"sample_id": "a", "ddx58": 4, "RIGI": 6, "tp53 ": 10}], sep="\t")
    m = read_expression(f, units="tpm", aliases=shipped_aliases())
    assert m.genes == ["RIGI", "TP53"]
    np.testing.assert_allclose(m.values, np.log1p([[10.0, 10.0]]), rtol=1e-6)


def test_log_units_sum_duplicates_in_linear_space(tmp_path):
    f = _write(tmp_path / "e.csv", [{"sample_id": "a", "DDX58": np.log1p(4.0), "RIGI": np.log1p(6.0)}])
    m = read_expression(f, units="log", aliases={"DDX58": "RIGI"})
    np.testing.assert_allclose(m.values, np.log1p([[10.0]]), rtol=1e-6)


def test_gzipped_tsv_parquet_and_h5ad_agree(tmp_path):
    rows = [{"sample_id": f"s{i}", "TP53": i + 1, "MKI67": 2 * i + 3, "CD8A": 7} for i in range(4)]
    csv = _write(tmp_path / "e.csv", rows)
    tsv = _write(tmp_path / "e.tsv", rows, sep="\t")
    gz = tmp_path / "e.tsv.gz"
    gz.write_bytes(gzip.compress(tsv.read_bytes()))
    parquet = tmp_path / "e.parquet"
    pl.DataFrame(rows).write_parquet(parquet)
    import anndata

    frame = pl.DataFrame(rows)
    adata = anndata.AnnData(frame.drop("sample_id").to_numpy().astype(np.float32))
    adata.obs_names = frame["sample_id"].to_list()
    adata.var_names = ["TP53", "MKI67", "CD8A"]
    h5ad = tmp_path / "e.h5ad"
    adata.write_h5ad(h5ad)
    ref = read_expression(csv)
    for f in (gz, parquet, h5ad):
        m = read_expression(f)
        assert m.sample_ids == ref.sample_ids and m.genes == ref.genes, f
        np.testing.assert_allclose(m.values, ref.values, rtol=1e-6)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"sample_id": "a", "TP53": "12", "MKI67": "lots"}], "non-numeric value 'lots' for sample a, gene MKI67"),
        ([{"sample_id": "a", "TP53": 1, "MKI67": -3}], "negative counts -3 for sample a, gene MKI67"),
        ([{"sample_id": "a", "TP53": 1}, {"sample_id": "a", "TP53": 2}], "duplicated sample_id a"),
        ([{"sample_id": "a", "TP53": 1, "MKI67": None}], "missing or non-finite value for sample a, gene MKI67"),
        ([{"sample_id": "a", "TP53": 0, "MKI67": 0}], "sample a has no counts"),
    ],
)
def test_bad_values_name_the_sample_and_gene(tmp_path, rows, message):
    f = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(InputError, match=message) as err:
        read_expression(f)
    assert str(f) in str(err.value)


def test_spots_need_coordinates(tmp_path):
    f = _write(tmp_path / "spots.csv", [{"sample_id": "a", "TP53": 1}])
    with pytest.raises(InputError, match="needs columns sample_id, x, y"):
        read_expression(f, spots=True)
    f = _write(tmp_path / "spots2.csv", [{"sample_id": "a", "x": 0, "y": 32, "TP53": 1}, {"sample_id": "a", "x": 0, "y": 0, "TP53": 2}])
    m = read_expression(f, spots=True)
    assert m.coords.tolist() == [[0, 32], [0, 0]] and m.genes == ["TP53"]


def test_align_reports_matched_and_dropped(tmp_path):
    f = _write(tmp_path / "e.csv", [{"sample_id": "a", "TP53": 1, "NOTAGENE": 3}])
    values, matched, dropped = read_expression(f).align(["MKI67", "TP53"])
    assert (matched, dropped) == (1, 1)
    assert np.isnan(values[0, 0]) and values[0, 1] == pytest.approx(np.log1p(0.25e6), rel=1e-6)
    with pytest.raises(InputError, match="shares no genes"):
        read_expression(f).align(["ESR1"])


def test_hgnc_aliases_skip_ambiguous_and_approved(tmp_path):
    f = tmp_path / "hgnc.txt"
    f.write_text(
        "hgnc_id\tsymbol\talias_symbol\tprev_symbol\n"
        "1\tRIGI\tRIG-I\tDDX58\n"
        "2\tSKIC3\t\tTTC37\n"
        "3\tGENEA\tSHARED\t\n"
        "4\tGENEB\tSHARED|GENEA\t\n"
    )
    aliases = read_hgnc_aliases(f)
    assert aliases == {"RIG-I": "RIGI", "DDX58": "RIGI", "TTC37": "SKIC3"}
