"""PEKA building blocks: the losses on tiny tensors, pseudo-labels, adapters on a small timm ViT."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hquery.training.peka import (
    PEKAConfig,
    PEKAStudent,
    adapt_backbone,
    distillation_loss,
    peka_loss,
    pseudo_labels,
    structure_loss,
    trainable_fraction,
)


def small_vit(seed: int = 0):
    import timm

    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=0)


def test_distillation_is_temperature_scaled_kl_teacher_to_student():
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    teacher = torch.tensor([[0.0, 2.0, 0.0], [1.0, -1.0, 0.0]])
    for tau in (1.0, 2.0):
        p, q = F.softmax(teacher / tau, -1), F.softmax(student / tau, -1)
        manual = (p * (p.log() - q.log())).sum(-1).mean() * tau**2
        assert distillation_loss(student, teacher, tau).item() == pytest.approx(manual.item(), rel=1e-6)
    assert distillation_loss(teacher, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_structure_loss_and_the_weighted_sum():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    manual = -(math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(1 / (1 + math.e))) / 2
    assert structure_loss(logits, labels).item() == pytest.approx(manual, rel=1e-6)
    s, t = torch.randn(2, 4), torch.randn(2, 4)
    config = PEKAConfig(lambda_kd=0.3, lambda_sa=0.7, tau=1.5)
    expected = 0.3 * distillation_loss(s, t, 1.5) + 0.7 * structure_loss(logits, labels)
    assert peka_loss(s, t, logits, labels, config).item() == pytest.approx(expected.item(), rel=1e-6)


def test_pseudo_labels_recover_separated_clusters():
    rng = np.random.default_rng(0)
    teacher = np.concatenate([rng.normal(0, 0.1, (20, 5)), rng.normal(5, 0.1, (20, 5))])
    labels = pseudo_labels(teacher, 2)
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[-1]
    with pytest.raises(ValueError, match="cannot make 8 clusters"):
        pseudo_labels(teacher[:5], 8)


@pytest.mark.parametrize("method", ["miss", "lora"])
def test_adapters_target_vit_linears_only_and_start_as_the_frozen_backbone(method):
    base = small_vit()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        before = base(images)
    adapted = adapt_backbone(small_vit(), method, rank=16)
    trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert trainable and all(".blocks." in n for n in trainable)
    assert not any("patch_embed" in n for n in trainable)
    fraction = trainable_fraction(adapted)
    assert (0.03 < fraction < 0.08) if method == "miss" else (0.05 < fraction < 0.15)
    with torch.no_grad():
        torch.testing.assert_close(adapted(images), before)


def test_training_moves_only_adapters_translator_and_classifier(tmp_path):
    from peft import PeftModel

    config = PEKAConfig(clusters=2)
    student = PEKAStudent(adapt_backbone(small_vit(), "miss", 16), 192, 8, config)
    frozen = {n: p.detach().clone() for n, p in student.named_parameters() if not p.requires_grad}
    images = torch.randn(16, 3, 32, 32)
    teacher = torch.randn(16, 8)
    labels = torch.tensor(pseudo_labels(teacher.numpy(), 2))
    optimiser = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(40):
        translated, logits = student(images)
        loss = peka_loss(translated, teacher, logits, labels, config)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    for name, value in student.named_parameters():
        if name in frozen:
            assert torch.equal(value, frozen[name]), name
    # the adapter alone saves and loads back onto a fresh backbone with the same outputs
    student.backbone.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(small_vit(), tmp_path / "adapter")
    student.eval()
    reloaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images), student.embed(images))
