"""Recall@K regression tests: alignment trained on the small demo cohort (about 1,000 pairs).

Measured with seed 0 on CPU (5 patient-level folds), type-conditioned heads against
a ridge that reads the type too: H&E -> RNA recall@10 aligned 0.613, ridge 0.520,
chance 0.050; RNA -> H&E aligned 0.635, ridge 0.672. (Plain heads against a plain
ridge: 0.368 / 0.395 and 0.386 / 0.377.) On about 1,000 pairs of the random ViT's
features the heads keep up with a linear map that knows what they know; the
docs/measured.md has the default demo's margins. Floors keep a margin for CPU nondeterminism.
"""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hquery.parallel import worker_pool
from hquery.training.cv import cross_validate
from hquery.training.fit import fit_alignment
from hquery.training.heads import AlignmentConfig
from hquery.training.pairs import load_pairs

FLOOR = 0.24  # recall@10 floor, ~5x chance (0.05)


@pytest.fixture(scope="module")
def pairs(demo_store):
    return load_pairs(demo_store)


@pytest.fixture(scope="module")
def honest(pairs):
    with worker_pool(2) as pool:
        return cross_validate(pairs, 5, AlignmentConfig(seed=0), executor=pool)


def test_parallel_folds_give_the_same_metrics(pairs):
    config = AlignmentConfig(seed=1, max_epochs=4)
    with worker_pool(2) as pool:
        assert pool is not None
        parallel = cross_validate(pairs, 3, config, executor=pool)
    assert parallel.rows() == cross_validate(pairs, 3, config).rows()


def test_recall_floor_well_above_chance(honest):
    for direction in ("he_to_rna", "rna_to_he"):
        aligned, _ = honest.summary("aligned", direction, "recall@10")
        chance, _ = honest.summary("chance", direction, "recall@10")
        assert aligned >= FLOOR and aligned >= 4 * chance, direction


def test_alignment_keeps_up_with_a_ridge_map(honest):
    for direction, share in (("he_to_rna", 1.0), ("rna_to_he", 0.9)):
        for metric in ("recall@10", "recall@50"):
            aligned, _ = honest.summary("aligned", direction, metric)
            ridge, _ = honest.summary("ridge", direction, metric)
            assert aligned >= share * ridge, (direction, metric, aligned, ridge)


def test_shuffled_pairs_fall_to_chance(pairs):
    rng = np.random.default_rng(0)
    shuffled = pairs.subset(np.arange(len(pairs)))
    shuffled.rna = pairs.rna[rng.permutation(len(pairs))]
    with worker_pool(2) as pool:
        cv = cross_validate(shuffled, 5, AlignmentConfig(seed=0), executor=pool)
    aligned, _ = cv.summary("aligned", "he_to_rna", "recall@10")
    chance, _ = cv.summary("chance", "he_to_rna", "recall@10")
    assert aligned < FLOOR and abs(aligned - chance) < 0.04


def _misaligned_loss(image, rna, logit_scale):
    """A broken loss: each image's 'positive' is the next sample's RNA profile."""
    logits = logit_scale * image @ rna.T
    labels = torch.roll(torch.arange(len(image)), 1)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, torch.roll(torch.arange(len(image)), -1))) / 2


def test_a_broken_loss_falls_below_the_floor(pairs):
    broken = functools.partial(fit_alignment, loss_fn=_misaligned_loss)
    cv = cross_validate(pairs, 5, AlignmentConfig(seed=0), fit=broken)
    assert cv.summary("aligned", "he_to_rna", "recall@10")[0] < FLOOR


def test_tile_level_pairs_come_from_spots(demo_store, tmp_path):
    from hquery.demo import SIZES
    from hquery.training import train_alignment
    from tests.conftest import copy_store

    tiles = load_pairs(demo_store, level="tile")
    small = SIZES["small"]
    assert len(tiles) == small.grid ** 2 * small.spot_samples
    assert all("#" in s for s in tiles.sample_ids) and tiles.rna.shape[1] == load_pairs(demo_store).rna.shape[1]
    store = copy_store(demo_store, tmp_path / "store")
    report = train_alignment(store, level="tile", config=AlignmentConfig(max_epochs=10))
    assert store.setting("alignment_model_tile") == report.version and report.level == "tile"
    assert store.setting("alignment_model") is None  # the slide model is untouched
