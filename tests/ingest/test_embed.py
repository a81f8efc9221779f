"""The encode loop: tiles read ahead in a thread give the same embeddings, in the same order, and the reader's
errors reach the caller."""

import threading

import numpy as np
import pytest

from hquery.errors import InputError
from hquery.ingest.encode import tile_embeddings
from hquery.ingest.image_encoders import create_image_encoder, parse_image_encoder
from hquery.ingest.slides import open_slide
from hquery.parallel import prefetch
from tests.conftest import write_tiles


def test_reading_ahead_embeds_the_same_tiles_in_the_same_order(tmp_path):
    sources = [(f"S{i}", open_slide(write_tiles(tmp_path / f"s{i}", grid=3, seed=i))) for i in range(4)]
    encoder = create_image_encoder(parse_image_encoder("he-features"))
    in_turn, ahead = (list(tile_embeddings(sources, encoder, 5, depth)) for depth in (0, 2))
    assert [(sid, ids.tolist()) for sid, ids, _, _ in in_turn] == [(sid, ids.tolist()) for sid, ids, _, _ in ahead]
    np.testing.assert_array_equal(np.concatenate([e for *_, e in in_turn]), np.concatenate([e for *_, e in ahead]))


def test_a_reader_error_reaches_the_caller_and_an_early_stop_stops_the_reader(tmp_path):
    folder = write_tiles(tmp_path / "s", grid=2)
    sorted(folder.iterdir())[-1].write_bytes(b"not a png")
    encoder = create_image_encoder(parse_image_encoder("he-features"))
    with pytest.raises(InputError, match="cannot read image"):
        list(tile_embeddings([("S", open_slide(folder))], encoder, 1, depth=2))
    before = threading.active_count()
    items = prefetch(iter(range(10**9)), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert threading.active_count() == before
