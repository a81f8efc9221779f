import pytest

from hquery.errors import InputError
from hquery.ingest.manifest import read_manifest


def test_manifest_keeps_clinical_columns_and_resolves_slides(tmp_path):
    (tmp_path / "slides" / "a").mkdir(parents=True)
    f = tmp_path / "m.csv"
    f.write_text("sample_id,patient_id,cancer_type,slide_path,stage,age\na,p1,BRCA,slides/a,II,61\nb,p1,,,III,\n")
    a, b = read_manifest(f)
    assert a.slide_path == (tmp_path / "slides" / "a").resolve() and a.cancer_type == "BRCA"
    assert a.clinical == {"stage": "II", "age": 61}
    assert b.slide_path is None and b.cancer_type is None and b.clinical == {"stage": "III"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("sample_id,cancer_type\na,BRCA\n", "missing required column\\(s\\) patient_id"),
        ("sample_id,patient_id\na,p1\nb,p2\na,p3\n", ":4: duplicated sample_id a \\(first on line 2\\)"),
        ("sample_id,patient_id,slide_path\na,p1,nowhere/slide.svs\n", ":2 \\(sample a\\): slide_path nowhere/slide.svs does not exist"),
        ("sample_id,patient_id\na,\n", ":2 \\(sample a\\): empty patient_id"),
        ("sample_id,patient_id\n", "no rows"),
    ],
)
def test_manifest_errors_name_file_and_line(tmp_path, text, message):
    f = tmp_path / "m.csv"
    f.write_text(text)
    with pytest.raises(InputError, match=message):
        read_manifest(f)
