"""What training reads: it refuses pairs whose slides were tiled at different physical resolutions."""

import pytest

from hquery.errors import InputError
from hquery.ingest import TilingOptions, ingest_cohort
from hquery.training import AlignmentConfig, train_alignment
from tests.conftest import write_cohort

ENC = "random:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2&seed=0"


def test_training_refuses_slides_tiled_at_different_resolutions(store, tmp_path):
    for prefix, mpp in (("A", 0.5), ("B", 0.25)):
        manifest, expression = write_cohort(tmp_path / prefix, n_pairs=6, n_ref=0, n_query=0, prefix=prefix,
                                            seed=ord(prefix))
        ingest_cohort(store, manifest, expression=expression, encoder=ENC, tiling=TilingOptions(mpp=mpp))
    quick = AlignmentConfig(max_epochs=2)
    with pytest.raises(InputError, match=r"tiled at 2 resolutions \(0.25 µm/px: 6 slides, e.g. BS000; 0.5 µm/px: "
                                         r"6 slides, e.g. AS000\).*allow mixing them explicitly"):
        train_alignment(store, config=quick, workers=1)
    report = train_alignment(store, config=quick, workers=1, mixed_resolution=True)
    assert report.n_pairs == 12
