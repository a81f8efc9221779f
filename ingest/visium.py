"""Spatial transcriptomics as it arrives: a Space Ranger ``outs/`` folder (or a HEST-1k sample) turned into
tile <-> spot pairs.

Each barcode of the filtered matrix becomes a tile centred on its spot, cut at the
spot's physical diameter (``spot_diameter_fullres`` px of the full-resolution
image: 55 µm on Visium), and a spot expression profile (its raw UMI counts). The
section's pseudo-bulk (the sum over its spots) is its slide-level profile. The
result is hquery's ordinary input layout, a manifest with a tile folder, a spot
file and an expression file, so the ingest that follows is the one every cohort
takes (atomic, validated, re-runnable) and the tiles stay where the store can
read them again (PEKA, re-embedding).

Read from the folder (Space Ranger 1.x and 2.x):

* ``filtered_feature_bc_matrix.h5``: the 10x HDF5 matrix (features x barcodes,
  compressed sparse columns); feature names that are Ensembl IDs are mapped to
  symbols (:func:`~hquery.genes.resolve_symbols`);
* ``spatial/tissue_positions.csv`` (with a header) or ``tissue_positions_list.csv``
  (without): barcode, in_tissue, array row and column, then the spot centre's row
  and column in full-resolution pixels;
* ``spatial/scalefactors_json.json``: the spot diameter and the scale of
  ``tissue_hires_image.png`` against the full-resolution image.

The full-resolution H&E (``image``) is what the spots were registered on. Without
it, tiles are cut from ``tissue_hires_image.png`` at its scale, and the tiles'
µm/px says how coarse they are.

A HEST-1k sample (Jaume et al. 2024; the layout of ``mahmoodlab/HEST``) is read
from its root: ``st/<id>.h5ad`` (counts, spot centres in ``obsm['spatial']`` in
WSI pixels), ``metadata/<id>.json`` (``pixel_size_um_estimated``,
``spot_diameter`` in µm) and ``wsis/<id>.tif``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

from hquery.errors import InputError
from hquery.ingest.slides import WSI_SUFFIXES, RegionImage, on_white, open_wsi
from hquery.names import file_safe

SPOT_DIAMETER_UM = 55.0
"""A Visium spot's diameter (10x Genomics' specification)."""
POSITION_FILES = ("tissue_positions.csv", "tissue_positions_list.csv")


@dataclasses.dataclass
class VisiumSection:
    """One Space Ranger section: spots with their centres (full-resolution px) and counts."""

    root: Path
    barcodes: list[str]
    centres: np.ndarray
    """``[spots, 2]`` (x, y) of each spot's centre in full-resolution pixels."""
    counts: np.ndarray
    """``[spots, genes]`` raw UMI counts."""
    genes: list[str]
    spot_diameter: float
    """Full-resolution pixels across a spot."""
    hires_scale: float | None
    """Pixels of ``tissue_hires_image.png`` per full-resolution pixel (Space Ranger only)."""
    spot_um: float = SPOT_DIAMETER_UM
    """A spot's diameter in µm."""
    image: Path | None = None
    """The full-resolution image the layout names (HEST's ``wsis/<id>.tif``)."""

    @property
    def mpp(self) -> float:
        """µm per full-resolution pixel, from the spot's physical size."""
        return self.spot_um / self.spot_diameter


def read_space_ranger(outs: str | Path) -> VisiumSection:
    """Read a Space Ranger ``outs/`` folder: the filtered barcodes, their spot centres and counts.

    Raises :class:`InputError` naming the file that is missing or malformed.
    """
    import h5py

    outs = Path(outs)
    matrix, spatial = outs / "filtered_feature_bc_matrix.h5", outs / "spatial"
    positions = next((spatial / name for name in POSITION_FILES if (spatial / name).is_file()), None)
    for path, what in ((matrix, "the filtered feature-barcode matrix"), (positions, "the spot positions"),
                       (spatial / "scalefactors_json.json", "the scale factors")):
        if path is None or not path.is_file():
            raise InputError(f"{outs}: not a Space Ranger outs folder; {what} "
                             f"({path.name if path else ' or '.join(POSITION_FILES)}) is missing")
    try:
        with h5py.File(matrix, "r") as h5:
            group = h5["matrix"]
            n_genes, n_barcodes = (int(v) for v in group["shape"][()])
            barcodes = [b.decode() for b in group["barcodes"][()]]
            names = [b.decode() for b in group["features/name"][()]]
            data, indices, indptr = group["data"][()], group["indices"][()], group["indptr"][()]
    except (OSError, KeyError) as exc:
        raise InputError(f"{matrix}: not a 10x HDF5 feature-barcode matrix: {exc}") from exc
    if len(indptr) != n_barcodes + 1 or len(names) != n_genes:
        raise InputError(f"{matrix}: its shape {n_genes} x {n_barcodes} does not match its arrays")
    counts = np.zeros((n_barcodes, n_genes), np.float32)
    for b in range(n_barcodes):  # compressed sparse columns: one column per barcode
        counts[b, indices[indptr[b]:indptr[b + 1]]] = data[indptr[b]:indptr[b + 1]]
    scale = json.loads((spatial / "scalefactors_json.json").read_text())
    where = _read_positions(positions)
    missing = [b for b in barcodes if b not in where]
    if missing:
        raise InputError(f"{positions}: no position for barcode {missing[0]} ({len(missing)} of the matrix's "
                         f"{len(barcodes)} barcodes have none)")
    try:
        diameter, hires = float(scale["spot_diameter_fullres"]), float(scale["tissue_hires_scalef"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{spatial / 'scalefactors_json.json'}: needs spot_diameter_fullres and "
                         f"tissue_hires_scalef: {exc}") from exc
    return VisiumSection(outs, barcodes, np.array([where[b] for b in barcodes], np.float64), counts, names,
                         diameter, hires)


def read_hest(root: str | Path, sample_id: str) -> VisiumSection:
    """Read HEST-1k sample ``sample_id`` under ``root`` (``st/``, ``metadata/``, ``wsis/``)."""
    try:
        import anndata
    except ImportError as exc:
        raise InputError(f"{root}: HEST samples are AnnData; install it with pip install 'hquery[h5ad]'") from exc

    root = Path(root)
    st, meta = root / "st" / f"{sample_id}.h5ad", root / "metadata" / f"{sample_id}.json"
    images = sorted((root / "wsis").glob(f"{sample_id}.*")) if (root / "wsis").is_dir() else []
    for path, what in ((st, "its expression (st/ID.h5ad)"), (meta, "its metadata (metadata/ID.json)")):
        if not path.is_file():
            raise InputError(f"{root}: no HEST sample {sample_id!r}; {what} is missing ({path})")
    if not images:
        raise InputError(f"{root}: no HEST sample {sample_id!r}; its image (wsis/{sample_id}.tif) is missing")
    try:
        fields = json.loads(meta.read_text())
        mpp, spot_um = float(fields["pixel_size_um_estimated"]), float(fields.get("spot_diameter", SPOT_DIAMETER_UM))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{meta}: needs pixel_size_um_estimated (µm per WSI pixel): {exc}") from exc
    try:
        adata = anndata.read_h5ad(st)
    except Exception as exc:
        raise InputError(f"{st}: cannot read as AnnData: {exc}") from exc
    if "spatial" not in adata.obsm:
        raise InputError(f"{st}: no obsm['spatial'] (each spot's centre in WSI pixels)")
    counts = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    return VisiumSection(root, [str(b) for b in adata.obs_names], np.asarray(adata.obsm["spatial"], np.float64)[:, :2],
                         counts.astype(np.float32), [str(g) for g in adata.var_names], spot_um / mpp, None, spot_um,
                         images[0])


def _read_positions(path: Path) -> dict[str, tuple[float, float]]:
    """barcode -> (x, y): the last two columns are the centre's full-resolution row (y) and column (x)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if rows and rows[0] and rows[0][0] == "barcode":
        rows = rows[1:]
    try:
        return {r[0]: (float(r[5]), float(r[4])) for r in rows if r}
    except (IndexError, ValueError) as exc:
        raise InputError(f"{path}: a row is not barcode, in_tissue, array_row, array_col, pxl_row, pxl_col: "
                         f"{exc}") from exc


@dataclasses.dataclass
class VisiumInputs:
    """What :func:`prepare_visium` wrote: pass them to ``ingest_cohort`` (``hquery ingest``)."""

    manifest: Path
    expression: Path
    spots: Path
    n_spots: int
    tile_px: int
    """Pixels across each written tile."""
    mpp: float
    """Their µm per pixel."""
    image: str
    """``full resolution`` or ``hires`` (the fallback)."""


def prepare_visium(outs: str | Path, dest: str | Path, sample_id: str, patient_id: str, *,
                   image: str | Path | None = None, cancer_type: str | None = None,
                   hest: bool = False) -> VisiumInputs:
    """Write a spatial section as hquery's inputs in ``dest``: a manifest row, its spot tiles, spots, bulk.

    Parameters
    ----------
    outs
        The Space Ranger ``outs/`` folder, or with ``hest`` a HEST-1k root holding sample ``sample_id``.
    dest
        Where the inputs go (kept: the store reads the tiles again to adapt or re-embed).
    image
        The full-resolution H&E the spots were registered on (a whole-slide image or
        a PNG/JPEG/TIFF); without it, HEST's ``wsis/<id>.tif``, or Space Ranger's
        ``spatial/tissue_hires_image.png``.

    Returns
    -------
    VisiumInputs
    """
    section = read_hest(outs, sample_id) if hest else read_space_ranger(outs)
    image = image if image is not None else section.image
    dest, name = Path(dest), file_safe(sample_id)
    tiles = dest / "slides" / name
    tiles.mkdir(parents=True, exist_ok=True)
    radius = section.spot_diameter / 2
    corners = np.round(section.centres - radius).astype(np.int64)
    scale, which = (1.0, "full resolution") if image is not None else (section.hires_scale, "hires")
    source = Path(image) if image is not None else section.root / "spatial" / "tissue_hires_image.png"
    crops = _cut_spots(source, corners, section.spot_diameter, scale, section.barcodes)
    for (x, y), crop in zip(corners.tolist(), crops):
        crop.save(tiles / f"{x}_{y}.png")
    tile_px = crops[0].width
    mpp = section.spot_um / tile_px
    genes = section.genes
    header = ["sample_id", "x", "y", *genes]
    _write_csv(dest / "spots.csv", header, [[sample_id, x, y, *row] for (x, y), row in
                                             zip(corners.tolist(), _integers(section.counts))])
    _write_csv(dest / "expression.csv", ["sample_id", *genes], [[sample_id, *_integers(section.counts.sum(0))]])
    _write_csv(dest / "manifest.csv", ["sample_id", "patient_id", "cancer_type", "slide_path", "mpp"],
               [[sample_id, patient_id, cancer_type or "", f"slides/{name}", f"{mpp:.6g}"]])
    return VisiumInputs(dest / "manifest.csv", dest / "expression.csv", dest / "spots.csv", len(corners), tile_px,
                        mpp, which)


def _cut_spots(image: Path, corners: np.ndarray, diameter: float, scale: float, barcodes: list[str]) -> list:
    """Each spot's square, ``diameter`` full-resolution px across, from ``image`` (``scale`` of full resolution):
    a pyramid through OpenSlide, anything else read whole (:class:`~hquery.ingest.slides.RegionImage`)."""
    if not image.is_file():
        raise InputError(f"{image}: image not found")
    size = max(1, int(round(diameter * scale)))
    pyramid = image.suffix.lower() in WSI_SUFFIXES - {".tif", ".tiff"} or _is_pyramid(image)
    with open_wsi(image) if pyramid else RegionImage(image) as picture:
        width, height = (round(v / scale) for v in picture.dimensions)
        _check_inside(image, corners, int(round(diameter)), width, height, barcodes)
        return [on_white(picture.read_region((round(x * scale), round(y * scale)), 0, (size, size)))
                for x, y in corners]


def _is_pyramid(path: Path) -> bool:
    if path.suffix.lower() not in (".tif", ".tiff"):
        return False
    try:
        import openslide

        return openslide.OpenSlide.detect_format(str(path)) is not None
    except Exception:
        return False


def _check_inside(image: Path, corners: np.ndarray, diameter: int, width: int, height: int,
                  barcodes: list[str]) -> None:
    outside = np.flatnonzero((corners < 0).any(1) | (corners[:, 0] + diameter > width)
                             | (corners[:, 1] + diameter > height))
    if len(outside):
        i = outside[0]
        raise InputError(f"{image}: spot {barcodes[i]} at x={corners[i, 0]}, y={corners[i, 1]} lies outside the "
                         f"{width}x{height} px image ({len(outside)} spots do); is it the image the spots were "
                         "registered on?")


def _integers(values: np.ndarray) -> list:
    return np.asarray(values).round().astype(np.int64).tolist()


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
