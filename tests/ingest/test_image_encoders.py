import numpy as np
import pytest

from hquery.errors import InputError
from hquery.ingest.image_encoders import ImageEncoder, parse_image_encoder

TINY = "random:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2&seed=3"


def _tiles(n=4, size=32):
    return np.random.default_rng(0).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def test_random_encoder_is_deterministic_for_a_seed():
    a = ImageEncoder(parse_image_encoder(TINY)).embed(_tiles())
    b = ImageEncoder(parse_image_encoder(TINY)).embed(_tiles())
    c = ImageEncoder(parse_image_encoder(TINY.replace("seed=3", "seed=4"))).embed(_tiles())
    assert a.shape == (4, 192) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_tiles_of_another_size_are_resized_to_the_model_input():
    enc = ImageEncoder(parse_image_encoder(TINY))
    assert enc.embed(_tiles(size=64)).shape == (4, 192)


def test_local_checkpoint_loads_through_timm_pretrained_path(tmp_path):
    import torch
    from safetensors.torch import save_file

    source = ImageEncoder(parse_image_encoder(TINY))
    with torch.no_grad():  # make the weights differ from any seed's init
        for p in source.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    weights = tmp_path / "vit_tiny.safetensors"
    save_file(source.model.state_dict(), str(weights))
    spec = parse_image_encoder(f"timm:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2&weights={weights}")
    loaded = ImageEncoder(spec)
    np.testing.assert_allclose(loaded.embed(_tiles()), source.embed(_tiles()), rtol=1e-5, atol=1e-5)
    # the version follows the checkpoint's bytes, not its path
    before = spec.version
    with torch.no_grad():
        for p in source.model.parameters():
            p.mul_(2)
    save_file(source.model.state_dict(), str(weights))
    assert parse_image_encoder(spec.text).version != before


def test_hub_models_fail_clearly_offline():
    with pytest.raises(InputError, match="pretrained weights come from the Hugging Face hub"):
        ImageEncoder(parse_image_encoder("hf-hub:MahmoodLab/UNI"))


@pytest.mark.parametrize("text", ["vit_small", "torch:resnet", "timm:"])
def test_bad_specs(text):
    with pytest.raises(InputError, match="unknown image encoder"):
        parse_image_encoder(text)


def test_missing_weights_file(tmp_path):
    with pytest.raises(InputError, match="weights file .* not found"):
        parse_image_encoder(f"timm:vit_tiny_patch16_224?weights={tmp_path / 'nope.pth'}")


def test_preset_and_versions_are_sql_safe():
    spec = parse_image_encoder("demo-vit")
    assert spec.source == "random" and spec.option_dict["img_size"] == 64
    assert spec.version.replace("_", "").isalnum() and spec.version == parse_image_encoder(spec.text).version
