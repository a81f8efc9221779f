"""Pathology foundation models by name: what each needs to embed a tile the way its authors did.

Each model has conventions that, if missed, silently give wrong embeddings: its
architecture's keyword arguments, the resolution it was trained at, its
normalisation, and how its tokens are pooled into one vector. A
:class:`FoundationModel` carries them, :data:`FOUNDATION_MODELS` names them, and
``--encoder uni`` (the hub) or ``--encoder 'uni?weights=PATH'`` (a checkpoint file
or a local hub snapshot folder, offline) builds one.

The architectures, normalisations, poolings and dtypes are TRIDENT's (Mahmood
Lab's published loader, ``trident/patch_encoder_models/load.py``, and its README's
encoder table, which gives every model here at ``--mag 20``, i.e. 0.5 µm/px); the
parameter counts the tests check them against, and the licence notes, are the
model cards' (``card``). Where a card and this registry differ, the card wins.

>>> entry = foundation_model("virchow2")
>>> entry.dim, entry.pooling, entry.mpp
(2560, 'cls+mean', 0.5)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from hquery.errors import InputError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN, OPENAI_CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
POOLINGS = ("cls", "cls+mean", "image-tower")
"""``cls``: the class token (timm's ``global_pool='token'``, or a transformers model's first token);
``cls+mean``: the class token beside the mean of the patch tokens, register tokens skipped (Virchow);
``image-tower``: a vision-language model's pooled image embedding, before its contrastive projection (CONCH)."""
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
"""What a hub snapshot folder holds the weights in, in the order looked for."""


@dataclasses.dataclass(frozen=True)
class FoundationModel:
    """A named image encoder and everything its embedding depends on."""

    name: str
    hub: str
    """Hugging Face repository (``ORG/NAME``)."""
    library: str
    """``timm``, ``transformers`` or ``conch`` (the model's own package)."""
    dim: int
    arch: str = ""
    """timm architecture (``library='timm'``)."""
    kwargs: Mapping = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    """Architecture keyword arguments. ``mlp_layer='swiglu_packed'`` and ``act_layer='silu'`` name timm's
    ``SwiGLUPacked`` and ``torch.nn.SiLU``; for transformers, the model config's fields."""
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    mpp: float = 0.5
    """Micrometres per pixel it was trained at (20x)."""
    tile_size: int = 224
    """Pixels read at ``mpp`` per tile (TRIDENT's ``--patch_size``), resized to ``input_size``."""
    pooling: str = "cls"
    dtype: str = "float16"
    """Inference dtype on a GPU (TRIDENT's ``precision``); the CPU runs float32."""
    access: str = ""
    """Licence and gating, from the card."""
    card: str = ""

    def __post_init__(self):
        if self.pooling not in POOLINGS or self.library not in ("timm", "transformers", "conch"):
            raise ValueError(f"{self.name}: pooling {self.pooling!r} or library {self.library!r} is not one hquery runs")

    def timm_kwargs(self) -> dict:
        """``kwargs`` with named layers resolved, for ``timm.create_model``."""
        import timm.layers
        import torch

        layers = {"swiglu_packed": timm.layers.SwiGLUPacked, "silu": torch.nn.SiLU}
        return {k: layers.get(v, v) if isinstance(v, str) and k.endswith("_layer") else v
                for k, v in {**self.kwargs, "num_classes": 0}.items()}


def _timm(name, hub, arch, dim, card, access, **fields) -> FoundationModel:
    kwargs = fields.pop("kwargs", {})
    return FoundationModel(name, hub, "timm", dim, arch, MappingProxyType(kwargs), card=card, access=access, **fields)


SWIGLU = {"mlp_layer": "swiglu_packed", "act_layer": "silu"}
NON_COMMERCIAL_GATED = "gated on the hub (accept its terms); CC-BY-NC-ND 4.0, non-commercial"
GATED = "gated on the hub (accept the terms on its card)"

FOUNDATION_MODELS: dict[str, FoundationModel] = {m.name: m for m in (
    # UNI (Chen et al. 2024): ViT-L/16, DINOv2 on Mass-100K; TRIDENT reads 256 px at 20x, resizes to 224
    _timm("uni", "MahmoodLab/uni", "vit_large_patch16_224", 1024, "https://huggingface.co/MahmoodLab/UNI",
          NON_COMMERCIAL_GATED, tile_size=256,
          kwargs={"img_size": 224, "patch_size": 16, "init_values": 1e-5, "dynamic_img_size": True}),
    # UNI2-h: ViT-H/14 with SwiGLU, 8 register tokens, no class-token position embedding; bfloat16
    _timm("uni2-h", "MahmoodLab/UNI2-h", "vit_giant_patch14_224", 1536, "https://huggingface.co/MahmoodLab/UNI2-h",
          NON_COMMERCIAL_GATED, tile_size=256, dtype="bfloat16",
          kwargs={"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "init_values": 1e-5,
                  "embed_dim": 1536, "mlp_ratio": 2.66667 * 2, "no_embed_class": True, "reg_tokens": 8,
                  "dynamic_img_size": True, **SWIGLU}),
    # Virchow (Vorontsov et al. 2024): ViT-H/14, SwiGLU; embedding = class token + mean of the 256 patch tokens
    _timm("virchow", "paige-ai/Virchow", "vit_huge_patch14_224", 2560, "https://huggingface.co/paige-ai/Virchow",
          GATED, pooling="cls+mean",
          kwargs={"img_size": 224, "init_values": 1e-5, "mlp_ratio": 5.3375, "global_pool": "",
                  "dynamic_img_size": True, **SWIGLU}),
    # Virchow2: as Virchow with 4 register tokens, skipped in the patch mean
    _timm("virchow2", "paige-ai/Virchow2", "vit_huge_patch14_224", 2560, "https://huggingface.co/paige-ai/Virchow2",
          GATED, pooling="cls+mean",
          kwargs={"img_size": 224, "init_values": 1e-5, "reg_tokens": 4, "mlp_ratio": 5.3375, "global_pool": "",
                  "dynamic_img_size": True, **SWIGLU}),
    # H-optimus-0/1 (Bioptimus): ViT-g/14 with 4 registers, their own stain statistics
    _timm("h-optimus-0", "bioptimus/H-optimus-0", "vit_giant_patch14_reg4_dinov2", 1536,
          "https://huggingface.co/bioptimus/H-optimus-0", "Apache-2.0",
          mean=(0.707223, 0.578729, 0.703617), std=(0.211883, 0.230117, 0.177517),
          kwargs={"img_size": 224, "global_pool": "token", "init_values": 1e-5, "dynamic_img_size": True}),
    _timm("h-optimus-1", "bioptimus/H-optimus-1", "vit_giant_patch14_reg4_dinov2", 1536,
          "https://huggingface.co/bioptimus/H-optimus-1", GATED,
          mean=(0.707223, 0.578729, 0.703617), std=(0.211883, 0.230117, 0.177517),
          kwargs={"img_size": 224, "global_pool": "token", "init_values": 1e-5, "dynamic_img_size": True}),
    # Prov-GigaPath (Xu et al. 2024): the tile encoder, a ViT-g with 16 px patches on timm's dinov2 giant
    _timm("gigapath", "prov-gigapath/prov-gigapath", "vit_giant_patch14_dinov2", 1536,
          "https://huggingface.co/prov-gigapath/prov-gigapath", GATED,
          tile_size=256,
          kwargs={"img_size": 224, "in_chans": 3, "patch_size": 16, "embed_dim": 1536, "depth": 40, "num_heads": 24,
                  "mlp_ratio": 5.33334, "dynamic_img_size": True}),
    # Phikon (Filiot et al. 2023): iBOT ViT-B/16 in transformers' ViTModel; the class token of the last layer
    FoundationModel("phikon", "owkin/phikon", "transformers", 768, card="https://huggingface.co/owkin/phikon",
                    access="Owkin non-commercial licence (see the card)", dtype="float32",
                    kwargs=MappingProxyType({"model_type": "vit", "hidden_size": 768, "num_hidden_layers": 12,
                                             "num_attention_heads": 12, "intermediate_size": 3072,
                                             "image_size": 224, "patch_size": 16})),
    # Phikon-v2 (Filiot et al. 2024): DINOv2 ViT-L/16 in transformers' Dinov2Model
    FoundationModel("phikon-v2", "owkin/phikon-v2", "transformers", 1024,
                    card="https://huggingface.co/owkin/phikon-v2",
                    access="Owkin non-commercial licence (see the card)", dtype="float32",
                    kwargs=MappingProxyType({"model_type": "dinov2", "hidden_size": 1024, "num_hidden_layers": 24,
                                             "num_attention_heads": 16, "image_size": 224, "patch_size": 16})),
    # CONCH (Lu et al. 2024): a vision-language model; the image tower without its projection, 512-d
    FoundationModel("conch", "MahmoodLab/conch", "conch", 512, input_size=448, tile_size=512, pooling="image-tower",
                    mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, dtype="float32",
                    card="https://huggingface.co/MahmoodLab/CONCH",
                    access=NON_COMMERCIAL_GATED + "; needs the CONCH package (pip install "
                           "git+https://github.com/mahmoodlab/CONCH.git)"),
)}


def foundation_model(name: str) -> FoundationModel:
    """The registered model ``name``; an :class:`~hquery.errors.InputError` listing them otherwise."""
    try:
        return FOUNDATION_MODELS[name]
    except KeyError:
        raise InputError(f"unknown foundation model {name!r}; registered: {', '.join(FOUNDATION_MODELS)}") from None


def weights_file(path: Path) -> Path:
    """The checkpoint a ``weights=`` path names: the file itself, or the weights in a hub snapshot folder."""
    if path.is_file():
        return path
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise InputError(f"{path} holds no weights file ({', '.join(WEIGHT_FILES)})")


def cached_weights(entry: FoundationModel, cache_dir: Path | None = None) -> Path | None:
    """The model's weights in the local Hugging Face cache (or ``cache_dir``), if they were downloaded before."""
    from huggingface_hub import try_to_load_from_cache

    for name in WEIGHT_FILES:
        found = try_to_load_from_cache(entry.hub, name, cache_dir=cache_dir)
        if isinstance(found, str):
            return Path(found)
    return None


@dataclasses.dataclass(frozen=True)
class WeightsStatus:
    """A registered model and whether its weights are on this machine."""

    model: FoundationModel
    weights: Path | None
    """The cached checkpoint, or ``None`` (the hub is needed, or ``?weights=``)."""
    runnable: bool
    """Whether the libraries it is built with are installed."""


def weights_status(cache_dir: Path | None = None) -> list[WeightsStatus]:
    """Every registered model, its weights in the Hugging Face cache, and whether it can be built here."""
    from importlib.util import find_spec

    return [WeightsStatus(entry, cached_weights(entry, cache_dir),
                          find_spec({"timm": "timm", "transformers": "transformers", "conch": "conch"}[entry.library])
                          is not None)
            for entry in FOUNDATION_MODELS.values()]


def forward_embedding(entry: FoundationModel, model, x):
    """``model``'s embedding of normalised ``[b, 3, H, W]`` tiles, pooled as ``entry`` says: ``[b, dim]``."""
    import torch

    if entry.library == "transformers":
        return model(pixel_values=x).last_hidden_state[:, 0]
    if entry.library == "conch":
        return model.encode_image(x, proj_contrast=False, normalize=False)
    out = model(x)
    if entry.pooling == "cls+mean":
        return torch.cat([out[:, 0], out[:, model.num_prefix_tokens:].mean(1)], dim=-1)
    return out


def build_architecture(entry: FoundationModel, **overrides):
    """The model's exact architecture with random weights (``overrides`` shrink it, e.g. ``depth=1``)."""
    if entry.library == "timm":
        import timm

        return timm.create_model(entry.arch, pretrained=False, **{**entry.timm_kwargs(), **overrides})
    if entry.library == "transformers":
        from transformers import AutoConfig, AutoModel

        fields = {**entry.kwargs, **overrides}
        config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        return AutoModel.from_config(config, **({"add_pooling_layer": False} if config.model_type == "vit" else {}))
    raise InputError(f"{entry.name} is built by its own package; it has no architecture here to build")


def build_model(entry: FoundationModel, weights: Path | None = None):
    """The model with its weights: from ``weights`` (a checkpoint, or a hub snapshot folder) or the hub."""
    if entry.library == "conch":
        return _build_conch(entry, weights)
    if entry.library == "transformers":
        from transformers import AutoModel

        extra = {"add_pooling_layer": False} if entry.kwargs.get("model_type") == "vit" else {}
        if weights is not None:
            if not weights.is_dir():
                raise InputError(f"{entry.name} loads from a folder with config.json and its weights "
                                 f"(a hub snapshot), not the file {weights}")
            return AutoModel.from_pretrained(str(weights), local_files_only=True, **extra)
        try:
            return AutoModel.from_pretrained(entry.hub, **extra)
        except Exception as exc:
            raise _offline_error(entry, exc) from exc
    import timm

    if weights is None:
        try:
            return timm.create_model(f"hf-hub:{entry.hub}", pretrained=True, **entry.timm_kwargs())
        except Exception as exc:
            raise _offline_error(entry, exc) from exc
    model = build_architecture(entry)
    try:
        model.load_state_dict(read_state_dict(weights_file(weights)), strict=True)
    except RuntimeError as exc:
        raise InputError(f"{weights} does not hold {entry.name}'s weights: {str(exc).splitlines()[0]}") from exc
    return model


def read_state_dict(path: Path) -> dict:
    """A checkpoint's tensors: safetensors, or a pickled state dict read with ``weights_only``."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def _build_conch(entry: FoundationModel, weights: Path | None):
    try:
        from conch.open_clip_custom import create_model_from_pretrained
    except ImportError as exc:
        raise InputError(f"{entry.name} needs its own package, which is not installed: pip install "
                         "git+https://github.com/mahmoodlab/CONCH.git") from exc
    source = str(weights_file(weights)) if weights is not None else f"hf_hub:{entry.hub}"
    try:
        model, _ = create_model_from_pretrained("conch_ViT-B-16", checkpoint_path=source)
    except Exception as exc:
        raise _offline_error(entry, exc) if weights is None else InputError(
            f"cannot load {entry.name} from {weights}: {exc}") from exc
    return model


def _offline_error(entry: FoundationModel, exc: Exception) -> InputError:
    return InputError(
        f"cannot load {entry.name} from the Hugging Face hub ({entry.hub}): {str(exc).splitlines()[0]}. "
        f"Its access: {entry.access}. Download it once where there is a network: "
        f"`huggingface-cli download {entry.hub} --local-dir DIR`, then use --encoder '{entry.name}?weights=DIR'")
