"""The map of the aligned space: every slide and profile placed, a slide near its own RNA, and the picture drawn."""

import pytest
from click.testing import CliRunner

from hquery.cli import main
from hquery.errors import PromptError
from hquery.evaluation.space import map_space


def test_slides_land_near_their_own_rna_and_the_map_is_kept(clinic_store):
    store = clinic_store
    space = map_space(store, color="cancer_type")
    n_slides = store.sql("select count(*) n from samples where has_slide").to_pylist()[0]["n"]
    n_profiles = store.sql("select count(*) n from samples where has_expression").to_pylist()[0]["n"]
    assert (space.modality == "slide").sum() == n_slides and (space.modality == "rna").sum() == n_profiles
    assert space.n_pairs > 500 and space.pair_distance_ratio < 0.5  # aligned: own RNA far nearer than another's
    rows = store.sql(f"select modality, count(*) n from space_coordinates where map_id = '{space.map_id}' "
                     "group by 1 order by 1").to_pylist()
    assert rows == [{"modality": "rna", "n": n_profiles}, {"modality": "slide", "n": n_slides}]
    assert space.plot.stat().st_size > 20_000
    again = map_space(store, color="cancer_type", record=False)
    assert (again.xy == space.xy).all()  # seeded: the same map twice
    with pytest.raises(PromptError):
        map_space(store, color="no_such_column_or_set", record=False)


def test_cli_map_space_by_a_gene_set(clinic_store, tmp_path):
    out = tmp_path / "space.png"
    result = CliRunner().invoke(main, ["clinic", "map-space", "--color", "G2M", "--out", str(out), "--store",
                                       str(clinic_store.root)])
    assert result.exit_code == 0, result.output
    assert "own RNA lies" in result.output and out.stat().st_size > 20_000
