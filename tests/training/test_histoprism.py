"""HistoPrism's model: padding masks, cancer-type conditioning, positions, and a fit on bags made here."""

import dataclasses

import numpy as np
import pytest
import torch

from hquery.stats import pearson_per_column
from hquery.training.bags import SlideBags
from hquery.training.histoprism import (
    HistoPrism,
    HistoPrismConfig,
    _pad,
    fit_histoprism,
    sinusoidal_2d,
)

SMALL = HistoPrismConfig(dim=16, heads=2, layers=1, type_tokens=2, dropout=0.0)


def make_bags(n_slides=120, dim=12, n_genes=30, n_types=3, seed=0, counts=None) -> SlideBags:
    """Slides whose bulk profile is a type-specific baseline plus a linear read of their mean tile."""
    rng = np.random.default_rng(seed)
    counts = np.asarray(counts if counts is not None else rng.integers(1, 7, n_slides))
    types = [f"T{i % n_types}" for i in range(len(counts))]
    tiles = rng.normal(size=(int(counts.sum()), dim)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    baseline = rng.normal(scale=2.0, size=(n_types, n_genes))
    weights = rng.normal(size=(dim, n_genes))
    means = np.stack([tiles[offsets[i]:offsets[i + 1]].mean(0) for i in range(len(counts))])
    bulk = baseline[[i % n_types for i in range(len(counts))]] + means @ weights * 0.5
    bulk += rng.normal(scale=0.3, size=bulk.shape)
    positions = np.concatenate([np.stack([np.arange(c) % 3, np.arange(c) // 3], 1) for c in counts]).astype(np.float32)
    return SlideBags([f"S{i:03d}" for i in range(len(counts))], np.array([f"P{i:03d}" for i in range(len(counts))]),
                     types, offsets, tiles, np.concatenate([np.arange(c) for c in counts]), positions, "test",
                     genes=[f"G{j}" for j in range(n_genes)], bulk=bulk.astype(np.float32),
                     spot_row=np.full(len(tiles), -1))


def forward(model, bags, slides, types=None, positions=True):
    x, mask, pos, _ = _pad(bags, np.asarray(slides), [np.arange(bags.n_tiles[i]) for i in slides])
    types = torch.as_tensor(types if types is not None else [1] * len(slides))
    return model(x, mask, types, pos if positions else None)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return HistoPrism(12, 30, 3, SMALL).eval()


def test_shapes_with_variable_tile_counts(model):
    bags = make_bags(n_slides=3, counts=[3, 5, 1])
    tiles, slides = forward(model, bags, [0, 1, 2])
    assert tiles.shape == (3, 5, 30) and slides.shape == (3, 30)
    assert torch.isfinite(tiles).all() and torch.isfinite(slides).all()


def test_padding_does_not_change_a_slide(model):
    bags = make_bags(n_slides=3, counts=[3, 5, 1])
    with torch.no_grad():
        alone_tiles, alone = forward(model, bags, [0])
        batched_tiles, batched = forward(model, bags, [0, 1, 2])
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched_tiles[0, :3], alone_tiles[0], rtol=1e-5, atol=1e-5)
    # whatever sits in the padded rows is ignored
    x, mask, pos, _ = _pad(bags, np.array([0, 1]), [np.arange(3), np.arange(5)])
    noisy = x.clone()
    noisy[0, 3:] = 100.0
    with torch.no_grad():
        _, clean = model(x, mask, torch.tensor([1, 1]))
        _, dirty = model(noisy, mask, torch.tensor([1, 1]))
    torch.testing.assert_close(clean, dirty)


def test_a_slide_prediction_is_its_pooled_tiles_not_their_order(model):
    bags = make_bags(n_slides=1, counts=[4])
    shuffled = dataclasses.replace(bags, tiles=bags.tiles[[2, 0, 3, 1]])
    with torch.no_grad():
        _, a = forward(model, bags, [0])
        _, b = forward(model, shuffled, [0])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_changing_the_cancer_type_changes_the_output(model):
    bags = make_bags(n_slides=2, counts=[4, 4])
    with torch.no_grad():
        _, as_first = forward(model, bags, [0, 1], types=[1, 1])
        _, as_second = forward(model, bags, [0, 1], types=[2, 2])
        _, as_unknown = forward(model, bags, [0, 1], types=[0, 0])
    assert (as_first - as_second).abs().max() > 1e-3
    assert (as_first - as_unknown).abs().max() > 1e-3


def test_without_cross_attention_the_type_is_ignored():
    torch.manual_seed(0)
    ablated = HistoPrism(12, 30, 3, dataclasses.replace(SMALL, conditioning=False)).eval()
    assert ablated.conditioning is None
    bags = make_bags(n_slides=2, counts=[4, 2])
    with torch.no_grad():
        _, a = forward(ablated, bags, [0, 1], types=[1, 2])
        _, b = forward(ablated, bags, [0, 1], types=[3, 0])
    torch.testing.assert_close(a, b)


def test_positions_matter_only_when_encoded():
    encoding = sinusoidal_2d(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), 16)
    assert encoding.shape == (3, 16)
    assert not torch.allclose(encoding[1], encoding[2])  # x and y are told apart
    torch.manual_seed(0)
    positional = HistoPrism(12, 30, 3, dataclasses.replace(SMALL, positional=True)).eval()
    bags = make_bags(n_slides=1, counts=[4])
    moved = dataclasses.replace(bags, positions=bags.positions + 5)
    with torch.no_grad():
        _, here = forward(positional, bags, [0])
        _, there = forward(positional, moved, [0])
    assert (here - there).abs().max() > 1e-4
    with pytest.raises(ValueError, match="positions"):
        forward(positional, bags, [0], positions=False)


def test_fit_learns_the_type_and_the_tiles_and_predict_unscales():
    bags = make_bags(n_slides=240, seed=1)
    train, test = bags.subset(np.arange(180)), bags.subset(np.arange(180, 240))
    config = dataclasses.replace(SMALL, max_epochs=40, patience=40, lr=3e-3)
    fitted = fit_histoprism(train, config)
    slides, tiles = fitted.predict(test)
    assert slides.shape == test.bulk.shape and tiles.shape == (len(test.tiles), 30)
    conditioned = np.nanmean(pearson_per_column(slides, test.bulk))
    blind, _ = fitted.predict(test, unknown_type=True, tiles=False)
    ablated = fit_histoprism(train, dataclasses.replace(config, conditioning=False))
    without, _ = ablated.predict(test, tiles=False)
    assert conditioned > 0.8
    assert conditioned > np.nanmean(pearson_per_column(blind, test.bulk)) + 0.2
    assert conditioned > np.nanmean(pearson_per_column(without, test.bulk)) + 0.2
    # predictions are in the targets' units, not standardised
    assert abs(slides.mean() - test.bulk.mean()) < 0.5 * test.bulk.std()
    # the same seed gives the same model
    again, _ = fit_histoprism(train, config).predict(test, tiles=False)
    np.testing.assert_array_equal(again, slides)
