"""Cohort manifests: one CSV row per sample.

Required columns ``sample_id`` and ``patient_id``; optional ``cancer_type``,
``slide_path`` (relative to the CSV) and ``mpp`` (the slide's µm per pixel, where
its file does not say it); every other column is clinical metadata, kept in the
catalog as JSON (``clinical->>'stage'`` in SQL).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from hquery.errors import InputError
from hquery.ingest.slides import check_mpp

REQUIRED_COLUMNS = ("sample_id", "patient_id")
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, "cancer_type", "slide_path", "mpp")


@dataclasses.dataclass(frozen=True)
class ManifestRow:
    sample_id: str
    patient_id: str
    cancer_type: str | None
    slide_path: Path | None
    clinical: dict[str, Any]
    line: int
    """Line number in the CSV (the header is line 1)."""
    mpp: float | None = None
    """The slide's µm per pixel at full resolution, where its file does not say it (column ``mpp``)."""

    def where(self, manifest: Path) -> str:
        return f"{manifest}:{self.line} (sample {self.sample_id})"


def read_manifest(path: str | Path, *, allow_outside_paths: bool = False) -> list[ManifestRow]:
    """Read and validate a cohort manifest; raise :class:`InputError` naming the file and row.

    A ``slide_path`` must name something under the manifest's folder (links inside
    it may point anywhere) unless ``allow_outside_paths``: a manifest from
    elsewhere cannot make hquery read ``/etc`` or ``../../..``.
    """
    import polars as pl

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a manifest is a CSV file, not a folder")
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    _check_rows(path)
    try:
        df = pl.read_csv(path, infer_schema_length=10_000, schema_overrides={c: pl.String for c in KNOWN_COLUMNS})
    except Exception as exc:
        raise InputError(f"{path}: cannot parse as CSV: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing required column(s) {', '.join(missing)}; found {', '.join(df.columns)}")
    if df.height == 0:
        raise InputError(f"{path}: the manifest has no rows")
    clinical_columns = [c for c in df.columns if c not in KNOWN_COLUMNS]
    rows: list[ManifestRow] = []
    first_line: dict[str, int] = {}
    for i, record in enumerate(df.iter_rows(named=True)):
        line = i + 2
        sample_id = (record["sample_id"] or "").strip()
        patient_id = (record["patient_id"] or "").strip()
        if not sample_id:
            raise InputError(f"{path}:{line}: empty sample_id")
        if not patient_id:
            raise InputError(f"{path}:{line} (sample {sample_id}): empty patient_id")
        if sample_id in first_line:
            raise InputError(
                f"{path}:{line}: duplicated sample_id {sample_id} (first on line {first_line[sample_id]})"
            )
        first_line[sample_id] = line
        slide = (record.get("slide_path") or "").strip()
        slide_path = None
        if slide:
            written = Path(os.path.normpath(path.parent.absolute() / slide))
            if not allow_outside_paths and not written.is_relative_to(path.parent.absolute()):
                raise InputError(f"{path}:{line} (sample {sample_id}): slide_path {slide} is outside the manifest's "
                                 f"folder {path.parent.absolute()}; move the slides under it, or allow paths outside "
                                 "it (--allow-outside-paths)")
            slide_path = (path.parent / slide).resolve()
            if not slide_path.exists():
                raise InputError(f"{path}:{line} (sample {sample_id}): slide_path {slide} does not exist ({slide_path})")
        clinical = {c: record[c] for c in clinical_columns if record[c] is not None}
        mpp = _mpp(record.get("mpp"), f"{path}:{line} (sample {sample_id})")
        rows.append(
            ManifestRow(sample_id, patient_id, (record.get("cancer_type") or "").strip() or None, slide_path, clinical,
                        line, mpp)
        )
    return rows


def _mpp(value, where: str) -> float | None:
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise InputError(f"{where}: mpp {text!r} is not a number (µm per pixel, e.g. 0.25)") from None
    return check_mpp(number, f"{where}: mpp")


def _check_rows(path: Path) -> None:
    """Refuse text that is not UTF-8, a header naming a column twice and rows whose field count differs from the
    header's, naming the line."""
    import csv
    import io

    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text ({exc.reason}); save the manifest as UTF-8") from exc
    if not text.strip():
        raise InputError(f"{path}: the manifest is empty; it needs a header with sample_id and patient_id")
    reader = csv.reader(io.StringIO(text))
    try:
        header = [name.strip() for name in next(reader)]
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise InputError(f"{path}:1: column(s) {', '.join(repr(n) for n in repeated)} appear more than once in "
                             "the header; each column must be named once")
        width = len(header)
        for row in reader:
            if row and len(row) != width:
                raise InputError(f"{path}:{reader.line_num}: {len(row)} fields where the header has {width}")
    except csv.Error as exc:  # a field past csv's limit (131,072 characters), a NUL byte, an unclosed quote
        raise InputError(f"{path}:{reader.line_num}: {exc}; a manifest field holds a path, an id or a clinical "
                         "value") from None
