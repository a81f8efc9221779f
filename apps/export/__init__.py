"""Prompt scores where people look at them: QuPath's GeoJSON detections, scverse's AnnData (``.h5ad``), and an
HTML report per run.

Each export runs (and records) one prompt, so every value it writes is a row of
``prompt_results_all`` under the run id it carries; a report reads a recorded run.
"""

from hquery.export.anndata import H5adExport, export_h5ad, prompt_anndata, write_h5ad
from hquery.export.qupath import QuPathExport, export_qupath, tile_features, write_geojson
from hquery.export.report import Report, write_report

__all__ = ["H5adExport", "QuPathExport", "Report", "export_h5ad", "export_qupath", "prompt_anndata", "tile_features",
           "write_geojson", "write_h5ad", "write_report"]
