"""``hquery ingest``, ``visium``, ``embed``, ``genesets`` and ``genes``: what goes into the store."""

from __future__ import annotations

from pathlib import Path

import click

from hquery.cli.options import device_option, engine_options, open_store, quiet_option, ray_engine, store_option
from hquery.cli.render import print_rows
from hquery.genesets import read_gmt
from hquery.ingest import (
    TilingOptions,
    add_gene_sets,
    import_gene_aliases,
    ingest_cohort,
    list_gene_sets,
    reembed_slides,
)
from hquery.ingest.visium import prepare_visium
from hquery.progress import progress_bars


@click.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--expression", type=click.Path(path_type=Path), help="Bulk expression file (samples as rows).")
@click.option("--spots", type=click.Path(path_type=Path), help="Tile-level expression: sample_id, x, y, genes.")
@click.option("--name", help="Cohort name [default: the manifest's file name, or its folder's for manifest.csv].")
@click.option("--encoder", help="Image encoder spec [default: the store's, else he-features, which needs no "
              "weights], e.g. a foundation model by name (uni, 'uni?weights=DIR'; hquery encoders list), "
              "hf-hub:ORG/NAME, timm:ARCH?weights=FILE, demo-vit, concat:he-features+demo-vit.")
@click.option("--rna-encoder", help="RNA encoder spec [default: the store's, else pca].")
@click.option("--units", type=click.Choice(["counts", "tpm", "log"]), default="counts", show_default=True)
@click.option("--tile-size", type=int, help="Tile size for whole-slide images (px) [default: the encoder's, "
              "e.g. 256 for uni, else 224].")
@click.option("--magnification", type=float, help="The tiles' resolution: 10/magnification µm per pixel "
              "[default: the encoder's, 20 (0.5 µm/px) for every registered foundation model and he-features].")
@click.option("--mpp", type=float, help="The slides' own µm per pixel at full resolution, for files that do not "
              "record it (a manifest column mpp overrides it per slide).")
@click.option("--min-tissue", type=float, default=0.5, show_default=True,
              help="Share of a tile the tissue mask must cover for the tile to be kept.")
@click.option("--stain-normalize", "stain", type=click.Choice(["macenko", "reinhard", "none"]),
              help="Stain-normalise tiles before they are embedded (part of the encoder's version) [default: as the "
                   "encoder spec says, i.e. none].")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--allow-outside-paths", is_flag=True,
              help="Let slide_path name slides outside the manifest's folder (refused by default).")
@click.option("--skip-bad-slides", is_flag=True,
              help="Leave out samples whose slide cannot be read (each named, and listed in the ingest's record) "
                   "instead of refusing the ingest.")
@engine_options
@device_option("auto")
@quiet_option
@store_option
def ingest(manifest, expression, spots, name, encoder, rna_encoder, units, tile_size, magnification, mpp, min_tissue,
           stain, batch_size, allow_outside_paths, skip_bad_slides, engine, address, ray_workers, gpus_per_worker,
           device, quiet, store_path_) -> None:
    """Ingest a cohort MANIFEST (CSV) with its slides and expression."""
    store = open_store(store_path_)
    ray = ray_engine(engine, address, ray_workers, gpus_per_worker)
    with progress_bars(not quiet) as progress:
        report = ingest_cohort(
            store, manifest, expression=expression, spots=spots, name=name, encoder=encoder,
            rna_encoder=rna_encoder, units=units, tiling=TilingOptions(tile_size, magnification, min_tissue, mpp),
            stain=stain, batch_size=batch_size, device=device, engine=ray, skip_bad_slides=skip_bad_slides,
            progress=progress, allow_outside_paths=allow_outside_paths,
        )
    click.echo(report.summary())


@click.command()
@click.option("--adapter", help="PEKA adapter version [default: the store's current one].")
@click.option("--batch-size", type=int, default=64, show_default=True)
@engine_options
@device_option("auto")
@quiet_option
@store_option
def embed(adapter, batch_size, engine, address, ray_workers, gpus_per_worker, device, quiet, store_path_) -> None:
    """Embed every stored slide again with a PEKA adapter, into new tables (the frozen ones stay)."""
    store = open_store(store_path_)
    ray = ray_engine(engine, address, ray_workers, gpus_per_worker)
    with progress_bars(not quiet) as progress:
        report = reembed_slides(store, adapter, batch_size=batch_size, device=device, engine=ray, progress=progress)
    click.echo(report.summary())


@click.group()
def genesets() -> None:
    """List and import gene sets (prompts)."""


@genesets.command("list")
@click.option("--collection", help="Only this collection (e.g. hallmark).")
@store_option
def genesets_list(collection, store_path_) -> None:
    """List the gene sets in the store."""
    rows = list_gene_sets(open_store(store_path_), collection)
    print_rows(["name", "collection", "source", "n_genes", "description"], [tuple(r) for r in rows])


@genesets.command("add")
@click.argument("gmt", type=click.Path(path_type=Path))
@click.option("--collection", help="Collection name [default: from the file name].")
@store_option
def genesets_add(gmt, collection, store_path_) -> None:
    """Import gene sets from a GMT file."""
    sets = read_gmt(gmt, collection=collection)
    add_gene_sets(open_store(store_path_), sets)
    click.echo(f"added {len(sets)} gene sets to collection {sets[0].collection}")


@click.group()
def genes() -> None:
    """Gene symbols and aliases."""


@genes.command("import-aliases")
@click.argument("hgnc_tsv", type=click.Path(path_type=Path))
@store_option
def genes_import_aliases(hgnc_tsv, store_path_) -> None:
    """Import alias and previous symbols from HGNC's hgnc_complete_set.txt."""
    click.echo(f"imported {import_gene_aliases(open_store(store_path_), hgnc_tsv)} aliases")


@click.command()
@click.argument("source", metavar="OUTS", type=click.Path(path_type=Path))
@click.option("--out", "dest", type=click.Path(path_type=Path), required=True,
              help="Where the inputs are written (kept: the store reads the tiles again).")
@click.option("--sample-id", required=True)
@click.option("--patient-id", required=True)
@click.option("--cancer-type")
@click.option("--image", type=click.Path(path_type=Path),
              help="The full-resolution H&E the spots were registered on [default: HEST's wsis/ID.tif, or Space "
                   "Ranger's spatial/tissue_hires_image.png].")
@click.option("--hest", is_flag=True, help="OUTS is a HEST-1k root (st/, metadata/, wsis/) holding --sample-id.")
def visium(source, dest, sample_id, patient_id, cancer_type, image, hest) -> None:
    """Turn a Space Ranger OUTS folder (or a HEST-1k sample) into tile <-> spot pairs to ingest: a tile per spot at
    its diameter."""
    inputs = prepare_visium(source, dest, sample_id, patient_id, image=image, cancer_type=cancer_type, hest=hest)
    click.echo(f"{inputs.n_spots} spots of {sample_id}: tiles of {inputs.tile_px} px ({inputs.mpp:.3g} µm/px, from the "
               f"{inputs.image} image) in {dest / 'slides'}, spot and pseudo-bulk counts beside them")
    click.echo(f"next: hquery ingest {inputs.manifest} --expression {inputs.expression} --spots {inputs.spots}")


COMMANDS = [ingest, visium, embed, genesets, genes]
