"""Slide sources: where a slide's tiles (or precomputed tile features) come from.

* a folder of tiles named ``<x>_<y>.png|jpg`` (level-0 pixel coordinates);
* a whole-slide image OpenSlide reads (.svs, .tif, .ndpi, ...), tiled on a grid
  at a physical resolution (µm per pixel; 20x = 0.5 µm/px, what the pathology
  foundation models were trained at), keeping tiles a tissue mask (Otsu on
  saturation, holes filled) covers;
* an ``.h5`` of precomputed features in the TRIDENT/CLAM layout
  (``features`` [N, D], ``coords`` [N, 2]); then no image encoder runs.

Tiles are yielded in batches, so memory stays bounded however large a slide is.

A slide's own resolution comes from its metadata: OpenSlide's ``mpp-x``/``mpp-y``
(which it reads from the vendor's fields, or from a TIFF's resolution tags), and,
failing that, the objective power (10 / power µm/px, with a note). A value no
microscope gives (a TIFF's 72-dpi default is 353 µm/px) is not believed. A slide
with no usable resolution is refused by name unless its µm/px is given (``mpp``);
tiling it at full resolution "as if 20x" would silently change what a tile shows.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hquery.errors import InputError

TILE_NAME = re.compile(r"^(\d+)_(\d+)\.(png|jpe?g)$", re.IGNORECASE)
LARGEST_COORDINATE = 2**31 - 1
"""The catalog holds tile positions as 32-bit integers: 2 billion pixels, half a kilometre at 0.25 µm/px."""
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
WSI_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif"}
REGION_SUFFIXES = {".png", ".jpg", ".jpeg"}
"""A single-image region (not a tile named ``<x>_<y>``): read whole, tiled like a whole-slide image."""
FEATURE_SUFFIXES = {".h5", ".hdf5"}


MPP_RANGE = (0.05, 20.0)
"""µm per pixel that a slide's metadata may claim and be believed (a 100x objective to a low-power overview)."""


DEFAULT_TILE_SIZE, DEFAULT_MAGNIFICATION = 224, 20.0


@dataclasses.dataclass(frozen=True)
class TilingOptions:
    """How whole-slide images are cut into tiles. ``None`` leaves a setting to the image encoder: a foundation
    model's own tile size and resolution (:meth:`with_defaults`), else 224 px at 20x."""

    tile_size: int | None = None
    magnification: float | None = None
    """The tiles' resolution, as a magnification: 10 / magnification µm per pixel (20x = 0.5 µm/px)."""
    min_tissue: float = 0.5
    """Fraction of a tile the tissue mask must cover for the tile to be kept."""
    mpp: float | None = None
    """The slides' own µm per pixel at full resolution, for slides whose files do not say (or say wrong);
    a manifest's ``mpp`` column overrides it per slide."""

    def __post_init__(self):
        if self.tile_size is not None and self.tile_size < 1:
            raise InputError(f"tile size must be at least 1 pixel, not {self.tile_size}")
        if self.magnification is not None and not self.magnification > 0:
            raise InputError(f"magnification must be above 0, not {self.magnification}")
        if not 0 <= self.min_tissue <= 1:
            raise InputError(f"min_tissue is a fraction of a tile, 0 to 1, not {self.min_tissue}")
        if self.mpp is not None:
            check_mpp(self.mpp, "mpp")

    def with_defaults(self, tile_size: int = DEFAULT_TILE_SIZE,
                      magnification: float = DEFAULT_MAGNIFICATION) -> TilingOptions:
        """These options with the settings left open filled in."""
        return dataclasses.replace(self, tile_size=self.tile_size or tile_size,
                                   magnification=self.magnification or magnification)

    @property
    def target_mpp(self) -> float:
        """µm per pixel of the tiles cut."""
        return 10.0 / (self.magnification or DEFAULT_MAGNIFICATION)


def check_mpp(value: float, where: str) -> float:
    """``value`` if it is a resolution a microscope gives, else an :class:`InputError` naming ``where``."""
    if not (isinstance(value, int | float) and MPP_RANGE[0] <= value <= MPP_RANGE[1]):
        raise InputError(f"{where}: {value!r} µm/px is not a slide resolution ({MPP_RANGE[0]:g} to "
                         f"{MPP_RANGE[1]:g}; 20x is about 0.5)")
    return float(value)


def slide_resolution(properties, path: Path, given: float | None = None) -> tuple[float, str]:
    """``(µm per pixel at level 0, where it came from)`` of a slide: ``given``, its metadata or its objective power.

    Raises :class:`InputError` naming the slide when none of them is usable.
    """
    if given is not None:
        return check_mpp(given, str(path)), "given"
    found = [_float(properties.get(f"openslide.mpp-{axis}")) for axis in "xy"]
    unit = {"centimeter": 1e4, "inch": 25400.0}.get(str(properties.get("tiff.ResolutionUnit", "")).lower())
    if found[0] is None and unit and _float(properties.get("tiff.XResolution")):
        found = [unit / _float(properties.get(f"tiff.{axis}Resolution") or properties.get("tiff.XResolution"))
                 for axis in "XY"]
    why = "it records no µm/px"
    if found[0] is not None:
        mpp = float(np.mean([v for v in found if v is not None]))
        if MPP_RANGE[0] <= mpp <= MPP_RANGE[1]:
            return mpp, "metadata"
        why = f"its metadata says {mpp:g} µm/px, which no microscope gives"
    power = _float(properties.get("openslide.objective-power"))
    if power and power > 0:
        return check_mpp(10.0 / power, str(path)), f"objective power {power:g}x"
    raise InputError(f"{path}: no usable resolution ({why}, and no objective power); give the slide's µm per pixel "
                     "at full resolution (mpp), e.g. 0.25 for a 40x scan")


def file_hash(paths: list[Path], extra: str = "") -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(extra.encode())
    for path in paths:
        h.update(path.name.encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


@dataclasses.dataclass
class SlideSource:
    """A slide's tile grid and how to read it."""

    path: Path
    kind: str
    coords: np.ndarray
    tile_size: int | None = None
    width: int | None = None
    height: int | None = None
    magnification: float | None = None
    mpp: float | None = None
    """µm per pixel of the tiles as cut (``None``: unknown)."""
    source_mpp: float | None = None
    """µm per pixel of the slide at full resolution."""
    resolution_from: str | None = None
    """Where ``source_mpp`` came from: ``metadata``, ``given`` or ``objective power Nx`` (a guess worth a note)."""

    @property
    def n_tiles(self) -> int:
        return len(self.coords)

    @functools.cached_property
    def content_hash(self) -> str:
        """A digest of the slide's bytes (and tiling), computed once."""
        return self._hash()

    def _hash(self) -> str:
        raise NotImplementedError

    def iter_tiles(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(tile_indices, images)`` with images uint8 ``[b, h, w, 3]``."""
        raise NotImplementedError

    def check(self) -> None:
        """Refuse, before anything is embedded, what would fail halfway through embedding (a no-op here)."""


@dataclasses.dataclass
class TileFolder(SlideSource):
    files: list[Path] = dataclasses.field(default_factory=list)
    tile_shape: tuple[int, int] = (0, 0)

    @classmethod
    def open(cls, path: Path, mpp: float | None = None) -> TileFolder:
        """The tiles in ``path``, taken as they are; ``mpp`` records their µm per pixel (unknown without it)."""
        from PIL import Image

        found = []
        at: dict[tuple[int, int], Path] = {}
        for entry in sorted(path.iterdir()):
            m = TILE_NAME.match(entry.name)
            if m:
                if not entry.is_file():  # a FIFO, a device or a link to one would hang the hashing
                    raise InputError(f"{entry}: a tile must be a regular image file")
                x, y = int(m.group(1)), int(m.group(2))
                if max(x, y) > LARGEST_COORDINATE:
                    raise InputError(f"{entry}: tile position x={x}, y={y} is beyond any slide (level-0 pixels, at "
                                     f"most {LARGEST_COORDINATE})")
                if (x, y) in at:
                    raise InputError(f"{entry}: a second tile at x={x}, y={y} (the first is {at[x, y].name}); "
                                     "each position holds one tile")
                at[x, y] = entry
                found.append((x, y, entry))
            elif entry.suffix.lower() in IMAGE_SUFFIXES:
                raise InputError(f"{entry}: tile images must be named <x>_<y>.png or .jpg (level-0 pixels)")
        if not found:
            raise InputError(f"{path}: no tiles named <x>_<y>.png|jpg in this folder")
        found.sort(key=lambda t: (t[1], t[0]))
        try:
            with Image.open(found[0][2]) as im:
                width, height = im.size
        except Exception as exc:
            raise InputError(f"{found[0][2]}: cannot read image: {exc}") from exc
        coords = np.array([(x, y) for x, y, _ in found], dtype=np.int64)
        return cls(
            path=path,
            kind="tiles",
            coords=coords,
            tile_size=width,
            width=int(coords[:, 0].max() + width),
            height=int(coords[:, 1].max() + height),
            files=[f for _, _, f in found],
            tile_shape=(height, width),
            magnification=10.0 / mpp if mpp else None,
            mpp=mpp,
            source_mpp=mpp,
            resolution_from="given" if mpp else None,
        )

    def _hash(self) -> str:
        return file_hash(self.files)

    def check(self) -> None:
        """Every tile's header and (for PNG) chunk checksums, without decoding: a truncated or corrupt tile, or
        one of another size, is named before any slide or profile is embedded."""
        from PIL import Image

        for f in self.files:
            try:
                with Image.open(f) as im:
                    size = im.size
                    im.verify()
            except Exception as exc:
                raise InputError(f"{f}: cannot read image: {exc}") from exc
            if size != self.tile_shape[::-1]:
                raise InputError(f"{f}: tile is {size[0]}x{size[1]}px but {self.files[0].name} is "
                                 f"{self.tile_shape[1]}x{self.tile_shape[0]}px; all tiles of a slide must match")

    def iter_tiles(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        from PIL import Image

        for start in range(0, len(self.files), batch_size):
            images = []
            for f in self.files[start : start + batch_size]:
                try:
                    with Image.open(f) as im:
                        arr = np.asarray(on_white(im))
                except Exception as exc:
                    raise InputError(f"{f}: cannot read image: {exc}") from exc
                if arr.shape[:2] != self.tile_shape:
                    raise InputError(
                        f"{f}: tile is {arr.shape[1]}x{arr.shape[0]}px but {self.files[0].name} is "
                        f"{self.tile_shape[1]}x{self.tile_shape[0]}px; all tiles of a slide must match"
                    )
                images.append(arr)
            yield np.arange(start, start + len(images)), np.stack(images)


@dataclasses.dataclass
class WholeSlide(SlideSource):
    level: int = 0
    downsample: float = 1.0
    tiling: TilingOptions = dataclasses.field(default_factory=TilingOptions)

    @classmethod
    def open(cls, path: Path, tiling: TilingOptions, mpp: float | None = None) -> WholeSlide:
        """Plan ``path``'s tiles at ``tiling``'s resolution; ``mpp`` (or ``tiling.mpp``) is the slide's own."""
        tiling = tiling.with_defaults()
        slide = open_wsi(path)
        with slide:
            width, height = slide.dimensions
            source_mpp, how = slide_resolution(slide.properties, path, mpp if mpp is not None else tiling.mpp)
            downsample = tiling.target_mpp / source_mpp
            if downsample < 0.9:
                raise InputError(f"{path}: scanned at {source_mpp:g} µm/px, coarser than the {tiling.target_mpp:g} "
                                 f"µm/px of its tiles ({tiling.magnification:g}x); tile it at "
                                 f"{10 / source_mpp:.3g}x or less")
            finer = downsample >= 1.0  # else within 10% of the target: taken at full resolution
            downsample = max(1.0, downsample)
            step = int(round(tiling.tile_size * downsample))
            coords = _tissue_grid(slide, step, tiling.min_tissue)
            level = slide.get_best_level_for_downsample(downsample)
        if len(coords) == 0:
            raise InputError(f"{path}: the tissue mask found no tiles of {tiling.tile_size}px at {tiling.magnification}x")
        return cls(
            path=path,
            kind="wsi",
            coords=coords,
            tile_size=tiling.tile_size,
            width=width,
            height=height,
            magnification=tiling.magnification if finer else 10.0 / source_mpp,
            mpp=tiling.target_mpp if finer else source_mpp,
            source_mpp=source_mpp,
            resolution_from=how,
            level=level,
            downsample=downsample,
            tiling=tiling,
        )

    def _hash(self) -> str:
        t = self.tiling
        return file_hash([self.path], extra=f"wsi:{t.tile_size}:{t.magnification}:{t.min_tissue}:{self.source_mpp}")

    def draw_tiles(self, path: Path, size: int = 1024) -> Path:
        """A QC picture: the slide's thumbnail (at most ``size`` px) with every kept tile outlined, as PNG."""
        from PIL import ImageDraw

        slide = open_wsi(self.path)
        with slide:
            thumb = on_white(slide.get_thumbnail((size, size)))
        sx, sy = thumb.width / self.width, thumb.height / self.height
        step = self.tile_size * self.downsample
        draw = ImageDraw.Draw(thumb)
        for x, y in self.coords.tolist():
            draw.rectangle([x * sx, y * sy, (x + step) * sx - 1, (y + step) * sy - 1], outline=(0, 150, 60))
        thumb.save(path)
        return path

    def iter_tiles(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        from PIL import Image

        slide = open_wsi(self.path)
        with slide:
            level_ds = slide.level_downsamples[self.level]
            step = int(round(self.tile_size * self.downsample))
            read = int(math.ceil(step / level_ds))
            for start in range(0, self.n_tiles, batch_size):
                images = []
                for x, y in self.coords[start : start + batch_size]:
                    try:
                        region = slide.read_region((int(x), int(y)), self.level, (read, read))
                    except Exception as exc:
                        raise InputError(f"{self.path}: cannot read tile at x={x}, y={y}: {exc}") from exc
                    rgb = on_white(region)
                    if rgb.size != (self.tile_size, self.tile_size):
                        rgb = rgb.resize((self.tile_size, self.tile_size), Image.Resampling.BILINEAR)
                    images.append(np.asarray(rgb))
                yield np.arange(start, start + len(images)), np.stack(images)


@dataclasses.dataclass
class FeatureFile(SlideSource):
    dim: int = 0

    @classmethod
    def open(cls, path: Path) -> FeatureFile:
        import h5py

        try:
            with h5py.File(path, "r") as h5:
                if "features" not in h5 or "coords" not in h5:
                    raise InputError(f"{path}: a features file needs datasets 'features' [N, D] and 'coords' [N, 2]; has {sorted(h5)}")
                fshape = _squeeze_shape(h5["features"].shape)
                cshape = _squeeze_shape(h5["coords"].shape)
                for name in ("features", "coords"):
                    if h5[name].dtype.kind not in "fiu":
                        raise InputError(f"{path}: dataset '{name}' holds {h5[name].dtype}, not numbers")
                coords = np.asarray(h5["coords"][()]).reshape(cshape).astype(np.int64)
                attrs = dict(h5["coords"].attrs)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{path}: cannot read HDF5 features: {exc}") from exc
        if len(fshape) != 2 or len(cshape) != 2 or cshape[1] != 2 or fshape[0] != cshape[0]:
            raise InputError(f"{path}: features {fshape} and coords {cshape} must be [N, D] and [N, 2] with the same N")
        if fshape[0] == 0:
            raise InputError(f"{path}: the features file holds no tiles")
        unique, counts = np.unique(coords, axis=0, return_counts=True)
        if (counts > 1).any():
            x, y = unique[np.argmax(counts > 1)]
            rows = np.flatnonzero((coords == (x, y)).all(axis=1))
            raise InputError(f"{path}: a second tile at x={x}, y={y} (coords rows {rows[0]} and {rows[1]}); "
                             "each position holds one tile")
        size = attrs.get("patch_size_level0", attrs.get("patch_size"))
        return cls(path=path, kind="features", coords=coords, tile_size=int(size) if size is not None else None, dim=fshape[1])

    def _hash(self) -> str:
        return file_hash([self.path])

    def iter_features(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        import h5py

        with h5py.File(self.path, "r") as h5:
            data = h5["features"]
            squeeze = data.ndim == 3
            for start in range(0, self.n_tiles, batch_size):
                block = data[0, start : start + batch_size] if squeeze else data[start : start + batch_size]
                block = np.asarray(block, dtype=np.float32)
                if not np.isfinite(block).all():
                    raise InputError(f"{self.path}: non-finite feature values in tiles {start}..{start + len(block) - 1}")
                yield np.arange(start, start + len(block)), block


def on_white(image):
    """An RGB PIL image; transparent pixels (RGBA, LA, palette transparency) over white, as a slide's glass."""
    from PIL import Image

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.split()[3])
        return white
    return image.convert("RGB")


def open_slide(path: Path, tiling: TilingOptions | None = None, mpp: float | None = None) -> SlideSource:
    """The right :class:`SlideSource` for ``path`` (folder, features file or WSI).

    ``mpp`` is this slide's µm per pixel at full resolution where its file does not say it (a manifest's
    ``mpp`` column); otherwise ``tiling.mpp``, then the file's own metadata.
    """
    path = Path(path)
    tiling = tiling or TilingOptions()
    given = mpp if mpp is not None else tiling.mpp
    if path.is_dir():
        return TileFolder.open(path, given)
    suffix = path.suffix.lower()
    if suffix in FEATURE_SUFFIXES:
        return FeatureFile.open(path)
    if suffix in WSI_SUFFIXES | REGION_SUFFIXES:
        return WholeSlide.open(path, tiling, given)
    raise InputError(f"{path}: not a tile folder, a features .h5, a whole-slide image "
                     f"({', '.join(sorted(WSI_SUFFIXES))}) or a region image ({', '.join(sorted(REGION_SUFFIXES))})")


class RegionImage:
    """A PNG or JPEG region, read whole, behind the part of OpenSlide's interface that tiling uses.

    It records no resolution (:func:`slide_resolution` then asks for one).
    """

    level_downsamples = (1.0,)
    properties: dict = {}

    def __init__(self, path: Path):
        from PIL import Image

        guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # read whole on purpose: a section is huge
        try:
            with Image.open(path) as opened:
                self.image = on_white(opened)
        except Exception as exc:
            raise InputError(f"{path}: cannot read image: {exc}") from exc
        finally:
            Image.MAX_IMAGE_PIXELS = guard
        self.dimensions = self.image.size

    def get_thumbnail(self, size):
        thumb = self.image.copy()
        thumb.thumbnail(size)
        return thumb

    def get_best_level_for_downsample(self, downsample: float) -> int:
        return 0

    def read_region(self, location, level: int, size):
        x, y = location
        return self.image.crop((x, y, x + size[0], y + size[1]))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.image.close()


def open_wsi(path: Path):
    """An OpenSlide handle on ``path`` (a :class:`RegionImage` for a PNG or JPEG), or an :class:`InputError`
    saying what is missing or unreadable."""
    if Path(path).suffix.lower() in REGION_SUFFIXES:
        return RegionImage(path)
    try:
        import openslide
    except ImportError as exc:
        raise InputError(f"{path}: whole-slide images need OpenSlide (pip install 'hquery[wsi]')") from exc
    try:
        return openslide.OpenSlide(str(path))
    except Exception as exc:
        raise InputError(f"{path}: OpenSlide cannot read this slide: {exc}") from exc


def _tissue_grid(slide, step: int, min_tissue: float) -> np.ndarray:
    """Level-0 corners of grid tiles that the saturation/Otsu tissue mask, its holes filled (lumens, fat, cracks
    inside tissue), covers enough."""
    from scipy.ndimage import binary_fill_holes
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu

    width, height = slide.dimensions
    scale = max(1.0, max(width, height) / 2048)
    thumb = np.asarray(slide.get_thumbnail((int(width / scale), int(height / scale))).convert("RGB"))
    sx, sy = thumb.shape[1] / width, thumb.shape[0] / height
    saturation = rgb2hsv(thumb)[..., 1]
    threshold = threshold_otsu(saturation) if saturation.max() > saturation.min() else 1.0
    mask = binary_fill_holes(saturation > threshold)
    coords = []
    for y in range(0, height - step + 1, step):
        for x in range(0, width - step + 1, step):
            cell = mask[int(y * sy) : max(int((y + step) * sy), int(y * sy) + 1), int(x * sx) : max(int((x + step) * sx), int(x * sx) + 1)]
            if cell.size and cell.mean() >= min_tissue:
                coords.append((x, y))
    return np.array(coords, dtype=np.int64).reshape(-1, 2)


def _squeeze_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[1:] if len(shape) == 3 and shape[0] == 1 else shape


def _float(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def reopen_slide(store, sample_id: str) -> SlideSource:
    """A stored slide's source, opened again to read its pixels (PEKA trains on them; re-embedding reads them).

    Refuses a slide stored as precomputed features, and one whose files changed
    or moved since it was ingested: its tiles would no longer match the stored rows.
    """
    rows = store.query("slide_reopen", [sample_id])
    if not rows:
        raise InputError(f"sample {sample_id} has no slide in the store")
    path, kind, tile_size = rows[0].source_path, rows[0].source_kind, rows[0].tile_size
    magnification, content_hash, n_tiles = rows[0].magnification, rows[0].content_hash, rows[0].n_tiles
    source_mpp = rows[0].source_mpp
    if kind == "features":
        raise InputError(f"sample {sample_id}: its slide was ingested as precomputed features ({path}); "
                          "adapting or re-embedding needs the pixels")
    if not Path(path).exists():
        raise InputError(f"sample {sample_id}: its slide {path} is gone; restore it at that path")
    source = open_slide(Path(path), TilingOptions(tile_size or 224, magnification or 20.0), source_mpp)
    stored = np.array([(t.x, t.y) for t in store.query("slide_tiles", [sample_id])], dtype=np.int64).reshape(-1, 2)
    same = source.n_tiles == n_tiles and np.array_equal(source.coords, stored)
    if not same or (kind == "tiles" and source.content_hash != content_hash):
        raise InputError(f"sample {sample_id}: {path} changed since it was ingested; its stored tiles no longer match")
    return source
