"""The synthetic demo cohorts, written in the manifest format a user would ingest.

Two worlds share the expression model but not the look of their slides:
world A (:mod:`hquery.demo.render`, the default) and world B
(:mod:`hquery.demo.render_b`), with its own renderer, stain model, tile size,
type frequencies and mapping from programs to morphology. A claim made on one
is checked on the other (:data:`WORLDS`).

Expression is built on real data: each cancer type's baseline is its TCGA
median expression (pirlygenes 4.0.0, see ``tools/make_demo_baseline.py``) over
the MSigDB Hallmark genes. Latent programs raise the member genes of real
Hallmark sets; some programs also shape the rendered tiles (see
:mod:`hquery.demo.render`) and some leave no visible trace, so predictability
from histology is graduated. Programs vary across a slide's tiles, every tile
gets its own spot profile, and counts are negative binomial (gamma-Poisson).

Files written under ``out_dir``::

    cohort/manifest.csv        pairs (slide + expression) and query slides (slide only)
    cohort/expression.parquet  bulk counts of the pairs
    cohort/spots.parquet       per-tile counts of some pairs (sample_id, x, y, genes)
    cohort/slides/SAMPLE/X_Y.png
    reference/manifest.csv     an RNA-only reference library from other "cohorts"
    reference/expression.parquet
    truth/programs.parquet     the latent program activities (slide and tile level)

A :class:`Site` is another hospital of the same world: the same expression model
and morphology, but its own patients, case mix, staining protocol and scanner
(``generate_demo_cohort(..., site=SECOND_SITE)`` writes only ``cohort/``), so a
model fitted at the first site meets a real domain shift there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl
from scipy.ndimage import gaussian_filter

from hquery.demo import render_b
from hquery.demo.render import ARCHITECTURES, Stain, render_tile
from hquery.genesets import hallmark_sets


@dataclasses.dataclass(frozen=True)
class Program:
    name: str
    hallmarks: tuple[str, ...]
    visible: bool


PROGRAMS = (
    Program("proliferation", ("HALLMARK_G2M_CHECKPOINT", "HALLMARK_E2F_TARGETS", "HALLMARK_MITOTIC_SPINDLE"), True),
    Program("immune", ("HALLMARK_INTERFERON_GAMMA_RESPONSE", "HALLMARK_ALLOGRAFT_REJECTION",
                       "HALLMARK_INFLAMMATORY_RESPONSE"), True),
    Program("stroma", ("HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION", "HALLMARK_ANGIOGENESIS"), True),
    Program("hypoxia", ("HALLMARK_HYPOXIA", "HALLMARK_GLYCOLYSIS"), True),
    Program("oxphos", ("HALLMARK_OXIDATIVE_PHOSPHORYLATION", "HALLMARK_FATTY_ACID_METABOLISM"), False),
    Program("stress", ("HALLMARK_UNFOLDED_PROTEIN_RESPONSE", "HALLMARK_CHOLESTEROL_HOMEOSTASIS"), False),
    Program("hormone", ("HALLMARK_ESTROGEN_RESPONSE_EARLY", "HALLMARK_ANDROGEN_RESPONSE"), False),
)


@dataclasses.dataclass(frozen=True)
class DemoSize:
    pair_patients: int
    query_patients: int
    reference: int
    grid: int
    tile_px: int
    cancer_types: int
    spot_samples: int
    """How many pairs also get spatial (per-tile) expression, as in studies where few samples are profiled."""
    second_sample: float = 0.25
    later_patients: int = 0
    """Pair patients whose slides and RNA arrive in a second batch (``cohort/batch2.csv``), for ``hquery refresh``."""


DEMO_ENCODER = "he-features"
"""The image encoder ``hquery demo`` ingests with, chosen by measurement on both worlds (docs/measured.md):
the weights-free statistics beat the random ViT (``demo-vit``), and the two side by side, on the programs the
tiles draw."""


@dataclasses.dataclass(frozen=True)
class World:
    """A demo world: which programs its tiles draw, its sizes, and how its cancer types are drawn and weighted."""

    name: str
    drawn: tuple[str, ...]
    sizes: dict[str, DemoSize]
    type_order: tuple[int, ...] | None = None
    """Which of the baseline's cancer types, in order (default: the first ones)."""
    type_weights: tuple[float, ...] | None = None
    """Relative frequency of each type (default: uniform)."""

    def drawn_hallmarks(self) -> list[str]:
        """The Hallmark sets of the programs this world's tiles show."""
        return [h for p in PROGRAMS if p.name in self.drawn for h in p.hallmarks]

    def hidden_hallmarks(self) -> list[str]:
        return [h for p in PROGRAMS if p.name not in self.drawn for h in p.hallmarks]


# Alignment needs pairs at the scale of the seed paper (1,720): the contrastive heads
# are data-hungry (with only programs visible they matched ridge at ~700 pairs), so
# even "small" has ~1,000.
SIZES = {
    "small": DemoSize(pair_patients=800, query_patients=4, reference=200, grid=2, tile_px=64, cancer_types=4,
                      spot_samples=200, later_patients=80),
    "default": DemoSize(pair_patients=1390, query_patients=30, reference=480, grid=3, tile_px=64, cancer_types=8,
                        spot_samples=120, later_patients=120),
}

WORLDS = {
    "A": World("A", tuple(p.name for p in PROGRAMS if p.visible), SIZES),
    "B": World("B", render_b.DRAWN, {
        "small": DemoSize(pair_patients=800, query_patients=4, reference=200, grid=2, tile_px=render_b.TILE_PX,
                          cancer_types=6, spot_samples=200, later_patients=80),
        "default": DemoSize(pair_patients=1390, query_patients=30, reference=480, grid=3, tile_px=render_b.TILE_PX,
                            cancer_types=6, spot_samples=120, later_patients=120),
    }, type_order=(7, 3, 0, 5, 2, 6), type_weights=(1.0, 0.8, 0.6, 0.45, 0.3, 0.12)),
}
"""World A draws proliferation, immune, stroma and hypoxia; world B oxphos, stroma, immune and hormone,
with six types of unequal frequency (the rarest about 4% of patients)."""


@dataclasses.dataclass(frozen=True)
class Site:
    """Another hospital: its own patients, cancer-type mix, stain protocol and scanner."""

    name: str
    prefix: str
    """Four characters that start its patient and sample ids (the main cohort's are ``DEMO``)."""
    pair_patients: dict[str, int]
    """Patients with a slide and RNA, per demo size."""
    type_weights: tuple[float, ...]
    """Relative frequency of the world's cancer types there (truncated to the size's types)."""
    stain_strength: float
    """Multiplies each slide's stain intensity: a heavier haematoxylin and eosin protocol."""
    hematoxylin_shift: tuple[float, float, float]
    """Added to the haematoxylin optical-density vector before normalising: another dye lot's hue."""
    scanner_gain: tuple[float, float, float]
    """Per-channel gain of the scanner (R, G, B), applied after a gamma of ``scanner_gamma``."""
    scanner_gamma: float

    def scan(self, tile: np.ndarray) -> np.ndarray:
        """The tile as this site's scanner records it."""
        rgb = (tile / 255.0) ** self.scanner_gamma * np.array(self.scanner_gain)
        return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


SECOND_SITE = Site("site2", "HSP2", {"small": 240, "default": 400},
                   type_weights=(0.1, 0.2, 0.3, 0.4, 0.05, 0.1, 0.2, 0.4), stain_strength=1.35,
                   hematoxylin_shift=(0.12, -0.1, 0.1), scanner_gain=(0.9, 0.97, 1.08), scanner_gamma=0.85)
"""The demo's second hospital: a heavier, bluer stain, a cooler scanner, and more of the later cancer types."""


@dataclasses.dataclass(frozen=True)
class DemoFiles:
    root: Path
    cohort_manifest: Path
    cohort_expression: Path
    cohort_spots: Path
    reference_manifest: Path
    reference_expression: Path
    truth: Path
    later_manifest: Path | None = None
    """The second batch of pairs (manifest and expression), ingested after the first model is in service."""
    later_expression: Path | None = None

    @classmethod
    def at(cls, root: str | Path) -> DemoFiles:
        """The files of a demo cohort written to ``root``."""
        root = Path(root)
        later = root / "cohort" / "batch2.csv"
        return cls(
            root=root,
            cohort_manifest=root / "cohort" / "manifest.csv",
            cohort_expression=root / "cohort" / "expression.parquet",
            cohort_spots=root / "cohort" / "spots.parquet",
            reference_manifest=root / "reference" / "manifest.csv",
            reference_expression=root / "reference" / "expression.parquet",
            truth=root / "truth" / "programs.parquet",
            later_manifest=later if later.exists() else None,
            later_expression=root / "cohort" / "batch2_expression.parquet" if later.exists() else None,
        )


def load_baseline() -> tuple[list[str], list[str], np.ndarray]:
    """Genes, cancer types and the ``[types, genes]`` log1p(FPKM) TCGA medians."""
    with resources.files("hquery").joinpath("data/demo_tcga_medians.csv.gz").open("rb") as fh:
        df = pl.read_csv(fh.read())
    types = [c for c in df.columns if c != "symbol"]
    return df["symbol"].to_list(), types, df.select(types).to_numpy().T


class _Model:
    """Expression model: baseline x program loadings, shared by every sample."""

    def __init__(self, rng: np.random.Generator, n_types: int, type_order: tuple[int, ...] | None = None):
        self.genes, types, baseline = load_baseline()
        order = list(type_order or range(n_types))[:n_types]
        self.types = [types[i] for i in order]
        self.rates = np.expm1(baseline[order]) + 0.05
        index = {g: i for i, g in enumerate(self.genes)}
        sets = {gs.name: gs.members for gs in hallmark_sets()}
        self.loadings = np.zeros((len(PROGRAMS), len(self.genes)))
        for p, program in enumerate(PROGRAMS):
            members = sorted({index[g] for h in program.hallmarks for g in sets[h] if g in index})
            self.loadings[p, members] = rng.uniform(0.25, 0.8, len(members))
        self.type_means = rng.normal(0, 0.5, (n_types, len(PROGRAMS)))

    def proportions(self, cancer: int, activity: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Expected expression proportions for ``activity`` ``[..., programs]``."""
        rate = self.rates[cancer] * np.exp(activity @ self.loadings + noise)
        return rate / rate.sum(axis=-1, keepdims=True)


def _nb_counts(rng: np.random.Generator, mean: np.ndarray, dispersion: float) -> np.ndarray:
    """Negative-binomial counts as a gamma-Poisson mixture."""
    return rng.poisson(rng.gamma(1.0 / dispersion, mean * dispersion)).astype(np.int32)


def _spatial_field(rng: np.random.Generator, grid: int, n: int) -> np.ndarray:
    """``[grid*grid, n]`` smooth, standardised variation across a slide's tiles."""
    field = gaussian_filter(rng.normal(size=(n, grid + 4, grid + 4)), sigma=(0, 1.2, 1.2))[:, 2:-2, 2:-2]
    field = field.reshape(n, -1)
    field = (field - field.mean(axis=1, keepdims=True)) / (field.std(axis=1, keepdims=True) + 1e-9)
    return field.T


def generate_demo_cohort(
    out_dir: str | Path,
    size: str = "default",
    seed: int = 0,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    world: str = "A",
    site: Site | None = None,
) -> DemoFiles:
    """Write the demo cohort of ``world`` (:data:`WORLDS`) to ``out_dir`` (deterministic for a seed)
    and return its file paths.

    With a ``site`` (e.g. :data:`SECOND_SITE`), write that hospital's pairs instead: the
    world's expression model with the site's patients, case mix, stain and scanner, in
    ``cohort/`` only (no query slides, spots, second batch or reference library).
    """
    from PIL import Image

    if world not in WORLDS:
        raise ValueError(f"unknown demo world {world!r}; worlds: {', '.join(WORLDS)}")
    setting = WORLDS[world]
    spec = setting.sizes[size]
    if site is not None:
        spec = dataclasses.replace(spec, pair_patients=site.pair_patients[size], query_patients=0, reference=0,
                                   spot_samples=0, later_patients=0)
    prefix = site.prefix if site else "DEMO"
    out = Path(out_dir)
    rng = np.random.default_rng(seed if world == "A" else [seed, ord(world)])
    model = _Model(rng, spec.cancer_types, setting.type_order)
    # appended to every per-sample seed: a site's draws are its own, the main cohort's stay as they were
    tag = ([] if world == "A" else [ord(world)]) + ([] if site is None else [sum(map(ord, site.prefix))])
    weights = np.array((site.type_weights if site else setting.type_weights) or [1.0] * spec.cancer_types)[
        : spec.cancer_types]
    n_programs = len(PROGRAMS)
    program_names = [p.name for p in PROGRAMS]
    visible = set(setting.drawn)
    (out / "cohort" / "slides").mkdir(parents=True, exist_ok=True)
    if site is None:
        (out / "reference").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)

    # patients and samples of the main cohort
    manifest, bulk_ids, bulk_counts, spot_rows, spot_counts, truth = [], [], [], [], [], []
    samples = []
    first_batch = spec.pair_patients + spec.query_patients
    for pat in range(first_batch + spec.later_patients):
        n = 2 if rng.random() < spec.second_sample else 1
        cancer = int(rng.integers(spec.cancer_types)) if world == "A" and site is None else \
            int(rng.choice(spec.cancer_types, p=weights / weights.sum()))
        for k in range(n):
            samples.append((f"{prefix}-P{pat:04d}", f"{prefix}-S{pat:04d}-{k + 1}", cancer,
                            pat < spec.pair_patients or pat >= first_batch))
    later = {s[1] for s in samples if int(s[0][6:]) >= first_batch}
    advance = progress("rendering demo slides", len(samples)) if progress else (lambda n: None)
    g = spec.grid
    coords = np.array([(i * spec.tile_px, j * spec.tile_px) for j in range(g) for i in range(g)], dtype=np.int64)
    patient_activity: dict[str, np.ndarray] = {}
    for patient, sample, cancer, has_rna in samples:
        srng = np.random.default_rng([seed, int(sample[6:10]), int(sample[-1])] + tag)
        activity = model.type_means[cancer] + srng.normal(0, 1, n_programs)
        tiles = activity + 0.6 * _spatial_field(srng, g, n_programs)
        noise = srng.normal(0, 0.2, len(model.genes))
        paint = _slide_painter(world, srng, spec.tile_px, model.types[cancer], site)
        folder = out / "cohort" / "slides" / sample
        folder.mkdir(exist_ok=True)
        for t, (x, y) in enumerate(coords):
            act = {name: float(tiles[t, p]) for p, name in enumerate(program_names) if name in visible}
            Image.fromarray(paint(act)).save(folder / f"{x}_{y}.png")
        props = model.proportions(cancer, tiles, noise)
        if has_rna:
            lib_bulk = 1e7 * srng.lognormal(0, 0.3)
            bulk_ids.append(sample)
            bulk_counts.append(_nb_counts(srng, lib_bulk * props.mean(axis=0), 0.05))
            if len(bulk_ids) <= spec.spot_samples:
                lib_spot = 2e4 * srng.lognormal(0, 0.3, (len(coords), 1))
                spot_counts.append(_nb_counts(srng, lib_spot * props, 0.2))
                spot_rows += [(sample, int(x), int(y)) for x, y in coords]
        stage = int(np.clip(np.round(1.5 + 0.6 * activity[0] + srng.normal(0, 0.8)), 1, 4))
        manifest.append({
            "sample_id": sample, "patient_id": patient, "cancer_type": model.types[cancer],
            "slide_path": f"slides/{sample}", "age": int(srng.integers(35, 85)),
            "sex": "F" if srng.random() < 0.5 else "M", "stage": ["I", "II", "III", "IV"][stage - 1],
            "grade": int(np.clip(np.round(2 + 0.7 * activity[0]), 1, 3)),
            **_clinical(np.random.default_rng([seed, int(sample[6:10]), 7] + tag),
                        patient_activity.setdefault(patient, activity)),
        })
        truth.append({"sample_id": sample, "tile_index": -1, **dict(zip(program_names, activity.tolist()))})
        truth += [{"sample_id": sample, "tile_index": t, **dict(zip(program_names, tiles[t].tolist()))}
                  for t in range(len(coords))]
        advance(1)

    first = [i for i, sid in enumerate(bulk_ids) if sid not in later]
    pl.DataFrame([m for m in manifest if m["sample_id"] not in later]).write_csv(out / "cohort" / "manifest.csv")
    _counts_frame([bulk_ids[i] for i in first], model.genes, np.stack([bulk_counts[i] for i in first])).write_parquet(
        out / "cohort" / "expression.parquet")
    if later:
        rows = [i for i, sid in enumerate(bulk_ids) if sid in later]
        pl.DataFrame([m for m in manifest if m["sample_id"] in later]).write_csv(out / "cohort" / "batch2.csv")
        _counts_frame([bulk_ids[i] for i in rows], model.genes, np.stack([bulk_counts[i] for i in rows])).write_parquet(
            out / "cohort" / "batch2_expression.parquet")
    if site is not None:
        pl.DataFrame(truth).write_parquet(out / "truth" / "programs.parquet")
        return DemoFiles.at(out)
    spots = _counts_frame([r[0] for r in spot_rows], model.genes, np.concatenate(spot_counts))
    spots = spots.insert_column(1, pl.Series("x", [r[1] for r in spot_rows])).insert_column(
        2, pl.Series("y", [r[2] for r in spot_rows]))
    spots.write_parquet(out / "cohort" / "spots.parquet")

    # the RNA-only reference library, from two other "cohorts"
    ref_manifest, ref_ids, ref_counts = [], [], []
    for i in range(spec.reference):
        rrng = np.random.default_rng([seed, 10_000 + i] + ([] if world == "A" else [ord(world)]))
        cancer = int(rrng.integers(spec.cancer_types)) if world == "A" else \
            int(rrng.choice(spec.cancer_types, p=weights / weights.sum()))
        activity = model.type_means[cancer] + rrng.normal(0, 1, n_programs)
        props = model.proportions(cancer, activity, rrng.normal(0, 0.2, len(model.genes)))
        sample = f"REF-{i:05d}"
        ref_ids.append(sample)
        ref_counts.append(_nb_counts(rrng, 1e7 * rrng.lognormal(0, 0.3) * props, 0.05))
        ref_manifest.append({"sample_id": sample, "patient_id": f"REF-P{i:05d}", "cancer_type": model.types[cancer],
                             "source_cohort": "REF-A" if i % 2 == 0 else "REF-B"})
        truth.append({"sample_id": sample, "tile_index": -1, **dict(zip(program_names, activity.tolist()))})
    pl.DataFrame(ref_manifest).write_csv(out / "reference" / "manifest.csv")
    _counts_frame(ref_ids, model.genes, np.stack(ref_counts)).write_parquet(out / "reference" / "expression.parquet")
    pl.DataFrame(truth).write_parquet(out / "truth" / "programs.parquet")
    return DemoFiles.at(out)


def _clinical(rng: np.random.Generator, activity: np.ndarray) -> dict:
    """A patient's clinical columns, with built-in associations for `hquery clinic associate` and `clinic survival` to find.

    ``pdl1`` (negative / low / high) follows the immune program; overall survival
    (``os_months``, ``os_event``: 1 died, 0 censored) shortens with proliferation
    (hazard ``exp(0.5 x activity)``, median about 60 months, censoring uniform on
    12-120 months); ``negative_control`` (a / b / c) depends on nothing. The draws
    are the patient's (the first sample's program activity), so two samples of a
    patient agree.
    """
    immune = activity[1] + rng.normal(0, 0.6)
    pdl1 = "negative" if immune < -0.3 else "low" if immune < 0.7 else "high"
    death = rng.exponential(60 / np.log(2) * np.exp(-0.5 * activity[0]))
    censor = rng.uniform(12, 120)
    return {"pdl1": pdl1, "os_months": round(float(min(death, censor)), 1), "os_event": int(death <= censor),
            "negative_control": str(rng.choice(["a", "b", "c"]))}


def _slide_painter(world: str, rng: np.random.Generator, tile_px: int, cancer_type: str, site: Site | None = None):
    """``paint(activity) -> uint8 tile`` for one slide: its stain (or palette) drawn once, then each tile, as the
    ``site``'s stain and scanner make it (world B's palettes take the scanner only)."""
    scan = site.scan if site else (lambda tile: tile)
    if world == "A":
        stain = Stain.sample(rng)
        if site:
            hue = stain.hematoxylin + np.array(site.hematoxylin_shift)
            stain = Stain(hue / np.linalg.norm(hue), stain.eosin, stain.strength * site.stain_strength)
        density = float(rng.uniform(0.8, 1.2))
        architecture = ARCHITECTURES.get(cancer_type, "solid")
        return lambda activity: scan(render_tile(rng, tile_px, activity, stain, density, architecture))
    palette = render_b.Palette.sample(rng)
    return lambda activity: scan(render_b.render_tile_b(rng, activity, palette, cancer_type, tile_px))


def _counts_frame(sample_ids: list[str], genes: list[str], counts: np.ndarray) -> pl.DataFrame:
    frame = pl.DataFrame(counts, schema=genes, orient="row")
    return frame.insert_column(0, pl.Series("sample_id", sample_ids))
