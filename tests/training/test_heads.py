import dataclasses

import numpy as np
import pytest
import torch

from hquery.training.fit import fit_alignment, project
from hquery.training.heads import AlignmentConfig, AlignmentModel, ProjectionHead
from hquery.training.loss import clip_loss
from hquery.training.splits import (
    SplitLeakError,
    check_patient_disjoint,
    patient_folds,
    patient_holdout,
)


def test_heads_output_unit_vectors_from_raw_embeddings():
    head = ProjectionHead(10, out_dim=8, hidden=16)
    x = torch.randn(5, 10) * 50 + 100
    head.fit_standardisation(x)
    y = head(x)
    assert y.shape == (5, 8)
    torch.testing.assert_close(y.norm(dim=1), torch.ones(5))


def test_clip_loss_is_low_for_matched_pairs_and_symmetric():
    x = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    scale = torch.tensor(20.0)
    matched = clip_loss(x, x, scale)
    shuffled = clip_loss(x, x[torch.randperm(16)], scale)
    assert matched < 0.5 < shuffled
    y = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    torch.testing.assert_close(clip_loss(x, y, scale), clip_loss(y, x, scale))
    # equals the mean of the two cross-entropies, computed independently
    logits = scale * x @ y.T
    expected = -(torch.log_softmax(logits, 1).diagonal().mean() + torch.log_softmax(logits, 0).diagonal().mean()) / 2
    torch.testing.assert_close(clip_loss(x, y, scale), expected)


def test_folds_never_split_a_patient():
    patients = np.repeat([f"p{i}" for i in range(20)], [1, 2, 3, 1] * 5)
    seen = []
    for train, test in patient_folds(patients, 5, seed=1):
        assert not set(patients[train]) & set(patients[test])
        seen += list(test)
    assert sorted(seen) == list(range(len(patients)))
    train, hold = patient_holdout(patients, 0.2, seed=0)
    assert not set(patients[train]) & set(patients[hold])


def test_a_leaked_split_is_refused():
    patients = np.array(["a", "a", "b", "c"])
    with pytest.raises(SplitLeakError, match="a"):
        check_patient_disjoint(patients, np.array([0, 2]), np.array([1, 3]))
    with pytest.raises(ValueError, match="between 2 and 3"):
        list(patient_folds(patients, 4))


def _toy(n=120, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 6))
    image = latent @ rng.normal(size=(6, 20)) + 0.3 * rng.normal(size=(n, 20))
    rna = latent @ rng.normal(size=(6, 12)) + 0.3 * rng.normal(size=(n, 12))
    return image, rna, np.array([f"p{i // 2}" for i in range(n)])


def test_fit_is_deterministic_for_a_seed_and_learns_the_pairing():
    image, rna, patients = _toy()
    config = AlignmentConfig(dim=16, hidden=32, max_epochs=60, batch_size=32, seed=3)
    a, hist = fit_alignment(image, rna, patients, config)
    b, _ = fit_alignment(image, rna, patients, config)
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(va, vb, msg=k)
    assert hist.best_val_loss < hist.val_loss[0]
    sim = project(a, image=image) @ project(a, rna=rna).T
    assert (sim.argmax(axis=1) == np.arange(len(sim))).mean() > 0.5


def test_model_round_trips_through_the_store(store):
    from hquery.names import Pointer
    from hquery.training.registry import load_model, save_model

    image, rna, patients = _toy()
    config = AlignmentConfig(dim=16, hidden=32, max_epochs=5, batch_size=32)
    model, _ = fit_alignment(image, rna, patients, config)
    with store.transaction() as txn:
        save_model(txn, "alignment", model, kind="clip_heads_slide", version="align_slide_test",
                   params={"config": dataclasses.asdict(config), "image_dim": model.image_dim, "rna_dim": model.rna_dim},
                   snapshot={"t": 1}, seed=config.seed, pointer=Pointer.ALIGNMENT_MODEL,
                   cv_rows=[{"method": "aligned", "direction": "he_to_rna", "metric": "recall@10", "fold": 0,
                             "value": 0.5}])
    loaded, record = load_model(store, "alignment")
    assert loaded.cancer_types == ()
    assert record.version == "align_slide_test" and record.params["rna_dim"] == 12 and record.data_snapshot == {"t": 1}
    np.testing.assert_allclose(project(loaded, image=image), project(model, image=image), rtol=1e-6)
    assert store.sql("select value from model_metrics").to_pylist() == [{"value": 0.5}]
    assert AlignmentModel is type(loaded)


def _typed_toy(n=480, seed=0):
    """Pairs whose RNA carries a strong type signal the image barely shows: only the type tells them apart."""
    rng = np.random.default_rng(seed)
    types = np.array(["A", "B", "C", "D"])[rng.integers(0, 4, n)]
    latent = rng.normal(size=(n, 4))
    offset = {t: rng.normal(size=12) * 3 for t in "ABCD"}
    image = latent @ rng.normal(size=(4, 20)) + 0.5 * rng.normal(size=(n, 20))
    rna = latent @ rng.normal(size=(4, 12)) + np.stack([offset[t] for t in types]) + 0.5 * rng.normal(size=(n, 12))
    return image, rna, np.array([f"p{i}" for i in range(n)]), types


def test_a_type_conditioned_image_head_reads_the_type():
    image, rna, patients, types = _typed_toy()
    (image, test_image), (rna, test_rna), (types, test_types) = ((x[:240], x[240:]) for x in (image, rna, types))
    patients = patients[:240]
    config = AlignmentConfig(dim=16, hidden=32, max_epochs=80, batch_size=32, seed=0)
    conditioned, _ = fit_alignment(image, rna, patients, config, cancer_types=types)
    plain, _ = fit_alignment(image, rna, patients, dataclasses.replace(config, condition_on_type=False),
                             cancer_types=types)
    assert conditioned.cancer_types == ("A", "B", "C", "D") and plain.cancer_types == ()
    with pytest.raises(ValueError, match="cancer type"):
        project(conditioned, image=image)

    def same_type_top1(model):
        sim = project(model, image=test_image, cancer_types=test_types) @ project(model, rna=test_rna).T
        return (test_types[sim.argmax(axis=1)] == test_types).mean()

    assert same_type_top1(conditioned) > same_type_top1(plain) + 0.2
    assert same_type_top1(conditioned) > 0.9
    # an unknown or missing type is all zeros: still a vector, just without the type's pull
    projected = project(conditioned, image=test_image[:2], cancer_types=["Z", None])
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1.0, rtol=1e-5)
