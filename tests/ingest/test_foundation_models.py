"""The foundation-model registry, offline: every entry's exact architecture built with random weights, and the
loading path (a checkpoint file or a hub snapshot folder) against a direct forward with the entry's own
normalisation and pooling."""

import dataclasses
import json
from types import MappingProxyType

import numpy as np
import pytest
import torch

from hquery.errors import InputError
from hquery.ingest import foundation_models
from hquery.ingest.foundation_models import FOUNDATION_MODELS, build_architecture, forward_embedding, foundation_model
from hquery.ingest.image_encoders import create_image_encoder, parse_image_encoder

BUILT_HERE = [name for name, entry in FOUNDATION_MODELS.items() if entry.library != "conch"]
PUBLISHED_PARAMS = {"uni2-h": 681e6, "virchow": 632e6, "virchow2": 632e6, "h-optimus-0": 1.1e9,
                    "h-optimus-1": 1.1e9, "gigapath": 1.13e9, "phikon": 86e6}
"""Parameter counts as the model cards give them."""


@pytest.mark.parametrize("name", BUILT_HERE)
def test_every_entry_builds_its_architecture_at_full_size_with_its_dimension(name):
    entry = foundation_model(name)
    with torch.device("meta"):  # no memory: shapes only
        model = build_architecture(entry)
        out = forward_embedding(entry, model, torch.zeros(2, 3, entry.input_size, entry.input_size))
    assert tuple(out.shape) == (2, entry.dim)
    if name in PUBLISHED_PARAMS:
        assert sum(p.numel() for p in model.parameters()) == pytest.approx(PUBLISHED_PARAMS[name], rel=0.035)
    assert entry.mpp == 0.5 and entry.tile_size >= entry.input_size


def shrunk(entry, **overrides):
    """The same family (pooling, registers, SwiGLU, normalisation) at a size a test can run."""
    return dataclasses.replace(entry, name=f"tiny-{entry.name}", kwargs=MappingProxyType({**entry.kwargs, **overrides}),
                               dim=overrides.get("embed_dim", overrides.get("hidden_size", entry.dim))
                               * (2 if entry.pooling == "cls+mean" else 1))


SMALL_VIT = {"depth": 1, "embed_dim": 48, "num_heads": 2}
TINY = {**{name: SMALL_VIT for name, entry in FOUNDATION_MODELS.items() if entry.library == "timm"},
        "phikon": {"num_hidden_layers": 1, "hidden_size": 48, "num_attention_heads": 2, "intermediate_size": 96},
        "phikon-v2": {"num_hidden_layers": 1, "hidden_size": 48, "num_attention_heads": 2}}
"""Every entry built here, shrunk in depth and width only."""


@pytest.mark.parametrize("name", list(TINY))
def test_weights_load_offline_and_embed_as_a_direct_forward_does(name, tmp_path, monkeypatch):
    entry = shrunk(foundation_model(name), **TINY[name])
    monkeypatch.setitem(FOUNDATION_MODELS, entry.name, entry)
    torch.manual_seed(0)
    reference = build_architecture(entry).eval()
    snapshot = tmp_path / "snapshot"
    if entry.library == "transformers":
        reference.save_pretrained(snapshot)  # config.json + model.safetensors, as the hub holds them
        sources = [snapshot]
    else:
        snapshot.mkdir()
        torch.save(reference.state_dict(), snapshot / "pytorch_model.bin")
        from safetensors.torch import save_file

        save_file(reference.state_dict(), str(tmp_path / "weights.safetensors"))
        sources = [snapshot, snapshot / "pytorch_model.bin", tmp_path / "weights.safetensors"]
    tiles = np.random.default_rng(0).integers(0, 256, (3, entry.input_size, entry.input_size, 3), dtype=np.uint8)
    x = (torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255 - torch.tensor(entry.mean).view(1, 3, 1, 1)) \
        / torch.tensor(entry.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        if entry.library == "transformers":
            direct = reference(pixel_values=x).last_hidden_state[:, 0]
        else:
            tokens = reference.forward_features(x)
            direct = torch.cat([tokens[:, 0], tokens[:, 1 + entry.kwargs.get("reg_tokens", 0):].mean(1)], -1) \
                if entry.pooling == "cls+mean" else reference.forward_head(tokens, pre_logits=True)
    versions = set()
    for source in sources:
        spec = parse_image_encoder(f"{entry.name}?weights={source}")
        assert spec.source == "fm" and spec.adaptable == (entry.library == "timm")
        encoder = create_image_encoder(spec)
        embedded = encoder.embed(tiles)
        assert embedded.shape == (3, entry.dim) and encoder.dim == entry.dim
        np.testing.assert_allclose(embedded, direct.numpy(), atol=1e-4, rtol=1e-4)
        versions.add(spec.version)
    assert len(versions) == len(sources)  # the weights' bytes and path name the version


def test_wrong_weights_and_options_are_refused_by_name(tmp_path, monkeypatch):
    entry = shrunk(foundation_model("uni"), depth=1, embed_dim=48, num_heads=2)
    monkeypatch.setitem(FOUNDATION_MODELS, entry.name, entry)
    other = shrunk(foundation_model("uni"), depth=2, embed_dim=48, num_heads=2)
    torch.save(build_architecture(other).state_dict(), tmp_path / "other.bin")
    with pytest.raises(InputError, match=r"other.bin does not hold tiny-uni's weights"):
        create_image_encoder(parse_image_encoder(f"tiny-uni?weights={tmp_path / 'other.bin'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty holds no weights file \(model.safetensors"):
        create_image_encoder(parse_image_encoder(f"tiny-uni?weights={tmp_path / 'empty'}"))
    with pytest.raises(InputError, match="takes weights= .*not img_size"):
        parse_image_encoder("uni?img_size=448")
    with pytest.raises(InputError, match="unknown foundation model 'unii'; registered: uni, uni2-h"):
        parse_image_encoder("fm:unii")


def test_the_hub_offline_fails_with_the_command_that_fixes_it():
    with pytest.raises(InputError) as error:
        create_image_encoder(parse_image_encoder("uni"))
    message = str(error.value)
    assert "cannot load uni from the Hugging Face hub (MahmoodLab/uni)" in message
    assert "huggingface-cli download MahmoodLab/uni --local-dir DIR" in message and "uni?weights=DIR" in message
    assert "gated" in message


def test_conch_says_it_needs_its_own_package():
    try:
        import conch  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="conch needs its own package, which is not installed: pip install"):
            create_image_encoder(parse_image_encoder("conch"))
    else:
        pytest.skip("the CONCH package is installed here")


def test_cached_weights_are_found_in_the_hub_cache(tmp_path):
    entry = foundation_model("uni")
    assert foundation_models.cached_weights(entry, cache_dir=tmp_path) is None
    snapshot = tmp_path / "models--MahmoodLab--uni" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "pytorch_model.bin").write_bytes(b"weights")
    (tmp_path / "models--MahmoodLab--uni" / "refs").mkdir()
    (tmp_path / "models--MahmoodLab--uni" / "refs" / "main").write_text("abc123")
    assert foundation_models.cached_weights(entry, cache_dir=tmp_path) == snapshot / "pytorch_model.bin"


def test_cli_encoders_list_and_doctor():
    from click.testing import CliRunner

    from hquery.cli import main

    result = CliRunner().invoke(main, ["encoders", "list", "--format", "json"])
    assert result.exit_code == 0, result.output
    listed = {row["name"]: row for row in json.loads(result.output)}
    assert list(listed) == list(FOUNDATION_MODELS)
    assert listed["virchow2"]["dim"] == 2560 and listed["virchow2"]["pooling"] == "cls+mean"
    assert listed["h-optimus-0"]["mpp"] == 0.5 and listed["uni"]["weights"] is None
    table = CliRunner().invoke(main, ["encoders", "list"])
    assert "MahmoodLab/uni" in table.output and "NAME?weights=PATH" in table.output
    doctor = CliRunner().invoke(main, ["doctor"])
    assert "foundation models  weights cached here: none" in doctor.output
