"""Frozen image encoders: timm models named by a spec string.

Spec grammar (``--encoder``)::

    timm:ARCH[?key=value&...]          timm's pretrained weights (needs the hub or its cache)
    timm:ARCH?weights=/path/file       weights from a local checkpoint (.safetensors, .pth, .bin)
    hf-hub:ORG/NAME[?...]              a timm model on the Hugging Face hub
    random:ARCH?seed=0[&...]           randomly initialised with a fixed seed (no weights needed)
    fm:NAME[?weights=PATH]             a pathology foundation model by name, with its own architecture,
                                       normalisation and pooling (:mod:`hquery.ingest.foundation_models`);
                                       PATH is a checkpoint or a local hub snapshot folder; the bare name
                                       (``uni``, ``virchow2`` ...) means the same
    precomputed:NAME                   features read from .h5 files; no model runs
    handcrafted:he-features            stain, tissue, nucleus and texture statistics; no weights
                                       (:mod:`hquery.ingest.he_features`)
    concat:SPEC+SPEC[+...]             the named encoders' embeddings side by side
    demo-vit                           preset: random:vit_tiny_patch16_224?img_size=64&patch_size=8&seed=0
    he-features                        preset: handcrafted:he-features
    SPEC&adapter=VERSION               SPEC with the store's PEKA adapter VERSION applied
    SPEC?stain=macenko|reinhard        tiles stain-normalised before SPEC embeds them (:mod:`hquery.ingest.stain`)

Other ``key=value`` options are passed to ``timm.create_model`` (``img_size``,
``patch_size`` ...). The encoder's *version* is derived from the normalised
spec and, for local weights, a hash of the checkpoint's bytes, so the same
model always lands in the same embedding tables; an adapted encoder's version
names its adapter.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import numpy as np

from hquery.errors import InputError
from hquery.ingest.foundation_models import (
    FOUNDATION_MODELS,
    build_model,
    forward_embedding,
    foundation_model,
    weights_file,
)
from hquery.ingest.he_features import HEFeatureEncoder
from hquery.ingest.slides import file_hash
from hquery.ingest.stain import METHODS as STAIN_METHODS
from hquery.ingest.stain import StainNormalizedEncoder
from hquery.store import sql_identifier

PRESETS = {
    "demo-vit": "random:vit_tiny_patch16_224?img_size=64&patch_size=8&seed=0",
    "he-features": "handcrafted:he-features",
}
SOURCES = ("timm", "hf-hub", "random", "fm", "precomputed", "handcrafted", "concat")
HANDCRAFTED = ("he-features",)
DEFAULT_IMAGE_ENCODER = "he-features"
"""What an ingest embeds with when neither ``--encoder`` nor the store names one. No pretrained pathology
weights ship with hquery; the weights-free statistics beat a random ViT on both demo worlds
(docs/measured.md), and unlike one they mean the same on a user's slides. A pathology foundation model
(``hf-hub:...`` or a local checkpoint) is the better choice wherever its weights can be had."""


def _typed(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


@dataclasses.dataclass(frozen=True)
class ImageEncoderSpec:
    source: str
    name: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        query = f"?{urlencode(self.options)}" if self.options else ""
        return f"{self.source}:{self.name}{query}"

    @property
    def option_dict(self) -> dict:
        return {k: _typed(v) for k, v in self.options}

    @property
    def version(self) -> str:
        """A stable, SQL-safe id: source, short name and a hash of spec (and weights)."""
        h = hashlib.blake2b(self.text.encode(), digest_size=4)
        weights = self.option_dict.get("weights")
        if weights:
            h.update(_weights_digest(weights_file(Path(weights))).encode())
        short = "+".join(p.name.split("/")[-1].split("?")[0] for p in self.parts) if self.source == "concat" \
            else self.name.split("/")[-1]
        adapter = self.option_dict.get("adapter")
        return sql_identifier(f"{self.source}_{short}_{adapter + '_' if adapter else ''}{h.hexdigest()}")

    @property
    def adapter(self) -> str | None:
        """The PEKA adapter version this spec applies, if any."""
        return self.option_dict.get("adapter")

    def with_adapter(self, version: str | None) -> ImageEncoderSpec:
        """The same backbone with adapter ``version`` (``None``: the frozen backbone)."""
        options = {k: v for k, v in self.options if k != "adapter"}
        if version:
            options["adapter"] = version
        return dataclasses.replace(self, options=tuple(sorted(options.items())))

    @property
    def runs_model(self) -> bool:
        """Whether ingest computes the embedding from pixels (everything but ``precomputed``)."""
        return self.source != "precomputed"

    @property
    def adaptable(self) -> bool:
        """Whether PEKA can put adapters on it: a single timm backbone, its tiles as they are."""
        return "stain" not in self.option_dict and (self.source in ("timm", "hf-hub", "random") or (
            self.source == "fm" and foundation_model(self.name).library == "timm"))

    def with_stain(self, method: str | None) -> ImageEncoderSpec:
        """The same encoder with its tiles stain-normalised by ``method`` (``None`` or ``none``: as they are)."""
        if self.source == "concat":
            if method in (None, "none"):
                return self
            raise InputError(f"image encoder {self.text}: give each part its own stain normalisation "
                             f"(e.g. concat:he-features?stain={method}+demo-vit)")
        options = {k: v for k, v in self.options if k != "stain"}
        if method not in (None, "none"):
            if method not in STAIN_METHODS:
                raise InputError(f"unknown stain normalisation {method!r}; use {', '.join(STAIN_METHODS)} or none")
            options["stain"] = method
        return dataclasses.replace(self, options=tuple(sorted(options.items())))

    @property
    def parts(self) -> list[ImageEncoderSpec]:
        """The encoders a ``concat:`` spec joins (just itself otherwise)."""
        return [parse_image_encoder(p) for p in self.name.split("+")] if self.source == "concat" else [self]


def parse_image_encoder(text: str) -> ImageEncoderSpec:
    """Parse an encoder spec string (see the module docstring)."""
    text = text.strip()
    head, mark, tail = text.partition("?")
    if head in PRESETS:
        preset = PRESETS[head]
        text = preset + (("&" if "?" in preset else "?") + tail if mark else "")
    if text.partition("?")[0] in FOUNDATION_MODELS:
        text = f"fm:{text}"
    source, sep, rest = text.partition(":")
    if not sep or source not in SOURCES or not rest:
        raise InputError(
            f"unknown image encoder {text!r}; use one of {', '.join(s + ':NAME' for s in SOURCES)} "
            f"or a preset ({', '.join(PRESETS)})"
        )
    if source == "concat":
        parts = [p.strip() for p in rest.split("+") if p.strip()]
        specs = [parse_image_encoder(p) for p in parts]
        if len(specs) < 2 or any(p.source in ("concat", "precomputed") for p in specs):
            raise InputError(f"image encoder {text!r}: concat joins two or more encoders that read pixels, "
                             "e.g. concat:he-features+demo-vit")
        return ImageEncoderSpec(source, "+".join(p.text for p in specs))
    name, _, query = rest.partition("?")
    if source == "handcrafted" and name not in HANDCRAFTED:
        raise InputError(f"unknown handcrafted encoder {name!r}; available: {', '.join(HANDCRAFTED)}")
    options = tuple(sorted(parse_qsl(query, keep_blank_values=False)))
    stain = dict(options).get("stain")
    if stain is not None and stain not in STAIN_METHODS:
        raise InputError(f"image encoder {text!r}: unknown stain normalisation {stain!r}; use "
                         f"{', '.join(STAIN_METHODS)}")
    if source == "fm":
        foundation_model(name)
        unknown = sorted(k for k, _ in options if k not in ("weights", "adapter", "stain"))
        if unknown:
            raise InputError(f"image encoder {text!r}: a foundation model takes weights= (and adapter=, stain=), not "
                             f"{', '.join(unknown)}; its architecture is fixed by the registry")
    weights = dict(options).get("weights")
    if weights:
        path = Path(weights).expanduser().resolve()
        if not (path.is_file() or (source == "fm" and path.is_dir())):
            raise InputError(f"encoder weights file {weights} not found")
        options = tuple(sorted({**dict(options), "weights": str(path)}.items()))
    return ImageEncoderSpec(source, name, options)


class ImageEncoder:
    """A frozen timm model that turns uint8 RGB tiles into embedding vectors.

    A spec naming an ``adapter`` needs ``adapter_dir``, the folder where peft
    saved that adapter; the adapter is loaded onto the same backbone and merged
    into its weights, so inference runs at the frozen backbone's speed.
    """

    def __init__(self, spec: ImageEncoderSpec, device: str = "cpu", adapter_dir: Path | None = None):
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.spec = spec
        self.device = torch.device(device)
        self.foundation = foundation_model(spec.name) if spec.source == "fm" else None
        if self.foundation:
            weights = spec.option_dict.get("weights")
            model = build_model(self.foundation, Path(weights) if weights else None)
            self.dim = self.foundation.dim
            size = self.foundation.input_size
            cfg = {"input_size": (3, size, size), "mean": self.foundation.mean, "std": self.foundation.std}
        else:
            model = _create_model(spec)
            self.dim = int(model.num_features)
            cfg = _data_config(model, spec)
        if spec.adapter:
            if adapter_dir is None:
                raise InputError(f"image encoder {spec.text} names adapter {spec.adapter}; its folder is needed")
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        self.model = model.to(self.device).eval()
        self.input_size = cfg["input_size"][1:]
        self.mean = torch.tensor(cfg["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], device=self.device).view(1, 3, 1, 1)

    @property
    def params(self) -> dict:
        return {
            "spec": self.spec.text,
            "input_size": list(self.input_size),
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
        }

    def preprocess(self, images: np.ndarray):
        """uint8 ``[b, h, w, 3]`` tiles -> the model's normalised ``[b, 3, H, W]`` input tensor."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        if tuple(x.shape[-2:]) != tuple(self.input_size):
            x = F.interpolate(x, size=self.input_size, mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean) / self.std

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embed uint8 ``[b, h, w, 3]`` tiles; returns float32 ``[b, dim]``."""
        import torch

        dtype = self.foundation.dtype if self.foundation and self.device.type == "cuda" else "float32"
        with torch.inference_mode(), torch.autocast(self.device.type, getattr(torch, dtype),
                                                    enabled=dtype != "float32"):
            return self.forward(self.model, self.preprocess(images)).float().cpu().numpy()

    def forward(self, model, x):
        """``model`` (this backbone, or an adapted copy of it) on normalised tiles, pooled as the encoder is."""
        return forward_embedding(self.foundation, model, x) if self.foundation else model(x)


class ConcatEncoder:
    """Several encoders' embeddings of the same tiles, side by side."""

    def __init__(self, spec: ImageEncoderSpec, device: str = "cpu"):
        self.spec = spec
        self.encoders = [create_image_encoder(part, device) for part in spec.parts]
        self.dim = sum(e.dim for e in self.encoders)

    @property
    def params(self) -> dict:
        return {"spec": self.spec.text, "parts": [e.params for e in self.encoders]}

    def embed(self, images: np.ndarray) -> np.ndarray:
        return np.hstack([e.embed(images) for e in self.encoders]).astype(np.float32)


def _weights_digest(path: Path) -> str:
    stat = path.stat()
    return _digest_once(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _digest_once(path: str, size: int, mtime_ns: int) -> str:
    """A checkpoint's digest, read once per file version: a foundation model's weights run to gigabytes."""
    return file_hash([Path(path)])


def encoder_tiling(spec_text: str | None) -> dict:
    """The tiling an encoder asks for: a foundation model's tile size and magnification (``{}`` for the rest)."""
    if not spec_text:
        return {}
    spec = parse_image_encoder(spec_text)
    if spec.source != "fm":
        return {}
    entry = foundation_model(spec.name)
    return {"tile_size": entry.tile_size, "magnification": 10.0 / entry.mpp}


def create_image_encoder(spec: ImageEncoderSpec, device: str = "cpu", adapter_dir: Path | None = None):
    """The encoder a spec names: a timm model (:class:`ImageEncoder`), the weights-free
    :class:`~hquery.ingest.he_features.HEFeatureEncoder`, or several side by side (:class:`ConcatEncoder`).

    Each has ``dim``, ``params`` and ``embed(uint8 tiles [b, h, w, 3]) -> float32 [b, dim]``.
    """
    stain = spec.option_dict.get("stain")
    if stain:
        return StainNormalizedEncoder(create_image_encoder(spec.with_stain(None), device, adapter_dir), stain)
    if spec.source == "handcrafted":
        return HEFeatureEncoder()
    if spec.source == "concat":
        return ConcatEncoder(spec, device)
    if not spec.runs_model:
        raise InputError(f"image encoder {spec.text} reads precomputed features; it cannot embed tiles")
    return ImageEncoder(spec, device=device, adapter_dir=adapter_dir)


def _create_model(spec: ImageEncoderSpec):
    import timm
    import torch

    kwargs = {k: v for k, v in spec.option_dict.items() if k not in ("seed", "weights", "adapter", "stain")}
    kwargs["num_classes"] = 0
    try:
        if spec.source == "random":
            torch.manual_seed(int(spec.option_dict.get("seed", 0)))
            return timm.create_model(spec.name, pretrained=False, **kwargs)
        if spec.source == "hf-hub":
            return timm.create_model(f"hf-hub:{spec.name}", pretrained=True, **kwargs)
        weights = spec.option_dict.get("weights")
        if weights:
            return timm.create_model(spec.name, pretrained=True, pretrained_cfg_overlay={"file": weights}, **kwargs)
        return timm.create_model(spec.name, pretrained=True, **kwargs)
    except Exception as exc:
        hint = ""
        if spec.source in ("timm", "hf-hub") and not spec.option_dict.get("weights"):
            hint = (
                "; pretrained weights come from the Hugging Face hub or its local cache: with no network, "
                f"download them elsewhere and pass timm:{spec.name.split('/')[-1]}?weights=/path/to/checkpoint"
            )
        raise InputError(f"cannot load image encoder {spec.text}: {exc}{hint}") from exc


def _data_config(model, spec: ImageEncoderSpec) -> dict:
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    img_size = spec.option_dict.get("img_size")
    if img_size is not None:
        cfg["input_size"] = (3, int(img_size), int(img_size))
    return cfg
