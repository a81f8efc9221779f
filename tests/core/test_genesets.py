"""Gene-set prompt resolution against a real catalog."""

import pytest

from hquery.genesets import PromptError, members_hash, resolve_prompts


def names(sets):
    return [gs.name for gs in sets]


@pytest.mark.parametrize("prompt", ["HALLMARK_G2M_CHECKPOINT", "hallmark_g2m_checkpoint", "HALLMARK_G2M", "G2M",
                                    "g2m_check"])
def test_exact_prefix_and_short_names(store, prompt):
    (gs,) = resolve_prompts(store, [prompt])
    assert gs.name == "HALLMARK_G2M_CHECKPOINT" and "CDK1" in gs.members and len(gs.members) == 200


def test_ambiguous_prefix_lists_the_candidates(store):
    with pytest.raises(PromptError, match="matches 2 gene sets: HALLMARK_ESTROGEN_RESPONSE_EARLY, "
                                          "HALLMARK_ESTROGEN_RESPONSE_LATE"):
        resolve_prompts(store, ["ESTROGEN"])


def test_unknown_name_suggests_the_closest(store):
    with pytest.raises(PromptError, match="no gene set named 'HALMARK_HYPOXA'; closest: HALLMARK_HYPOXIA"):
        resolve_prompts(store, ["HALMARK_HYPOXA"])


def test_adhoc_list_is_normalised_through_aliases(store):
    (gs,) = resolve_prompts(store, ["mki67, TOP2A,cdk1,,MKI67"])
    assert gs.members == ("MKI67", "TOP2A", "CDK1") and gs.collection == "adhoc"
    assert gs.members_hash == members_hash(["CDK1", "MKI67", "TOP2A"])


def test_files_gmt_and_symbol_lists(store, tmp_path):
    gmt = tmp_path / "mine.gmt"
    gmt.write_text("SET_A\tdesc\tCD8A\tCD8B\tGZMB\nSET_B\t\tCOL1A1\tCOL1A2\n")
    listing = tmp_path / "immune.txt"
    listing.write_text("# T cells\nCD8A CD8B\nGZMB,PRF1\n")
    sets = resolve_prompts(store, [f"@{gmt}", f"@{listing}"])
    assert names(sets) == ["SET_A", "SET_B", "immune"]
    assert sets[2].members == ("CD8A", "CD8B", "GZMB", "PRF1")
    with pytest.raises(PromptError, match="no such file"):
        resolve_prompts(store, [f"@{tmp_path / 'nope.gmt'}"])
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"CD8A\nGZMB # Granzym\xe9\n")
    with pytest.raises(PromptError, match=r"latin\.txt:2: not UTF-8"):
        resolve_prompts(store, [f"@{latin}"])
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfCD8A,GZMB\n")
    assert resolve_prompts(store, [f"@{tmp_path / 'bom.txt'}"])[0].members == ("CD8A", "GZMB")


def test_collection_and_repeats_without_duplicates(store):
    sets = resolve_prompts(store, ["G2M", "HALLMARK_G2M_CHECKPOINT"], collection="hallmark")
    assert len(sets) == 50 and names(sets)[0] == "HALLMARK_G2M_CHECKPOINT"
    with pytest.raises(PromptError, match="no gene sets in collection 'c2'; known collections: hallmark"):
        resolve_prompts(store, collection="c2")
    with pytest.raises(PromptError, match="no prompt"):
        resolve_prompts(store)
