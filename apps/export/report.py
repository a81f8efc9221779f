"""One self-contained HTML page per prompt run: ``hquery export report RUN_ID|--last --out report.html``.

The page needs nothing but itself (figures embedded as PNG data, a few lines
of script to sort the table): the run's parameters and provenance (model,
index and library versions), each gene set's genes found, route and held-out
R², the scores by cancer type, the score table, and for a slide-level run the
tile heatmaps of the top and bottom slides of each set.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from hquery.errors import HqueryError, InputError, NotReadyError
from hquery.genesets import resolve_prompts
from hquery.retrieval import run_prompt
from hquery.retrieval.routes import METHODS
from hquery.retrieval.tilemap import render_tile_map
from hquery.store import Store

__all__ = ["Report", "write_report"]

MAX_HEATMAP_SETS = 3
"""Gene sets whose top and bottom slides get tile heatmaps (each costs a tile-level prompt of two slides)."""


@dataclasses.dataclass(frozen=True)
class Report:
    path: Path
    run_id: str
    n_rows: int
    n_figures: int


def write_report(store: Store, run_id: str | None, out: str | Path) -> Report:
    """Write the HTML report of prompt run ``run_id`` (``None``: the newest run) to ``out``.

    Returns
    -------
    Report
        The file, the run, how many score rows and figures it holds.
    """
    if run_id is None:
        last = store.query("last_prompt_run")
        if not last:
            raise NotReadyError("no prompt run is recorded yet; run `hquery prompt` first", needs="prompt")
        run_id = last[0].run_id
    found = store.query("prompt_run", [run_id])
    if not found:
        raise InputError(f"no prompt run {run_id!r}; `hquery sql \"select run_id, created_at from prompt_runs\"` "
                         f"lists them")
    run = found[0]
    scores = store.query_arrow("prompt_run_scores", [run_id])
    sets = store.query("prompt_run_gene_sets", [run_id])
    figures = [("Scores by cancer type", _distributions(scores))]
    if run.level == "slide" and run.method in METHODS:
        figures += _heatmaps(store, scores, [s.gene_set for s in sets][:MAX_HEATMAP_SETS], run)
    page = _page(run, sets, scores, figures)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(path)
    return Report(path, run_id, scores.num_rows, len(figures))


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _distributions(scores: pa.Table) -> str:
    """One box plot a gene set: its scores in each cancer type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = scores.to_pylist()
    sets = sorted({r["gene_set"] for r in rows})
    types = sorted({r["cancer_type"] or "unknown" for r in rows})
    fig, axes = plt.subplots(1, len(sets), figsize=(max(4.0, 1.0 + 0.6 * len(types)) * len(sets), 3.6),
                             squeeze=False, constrained_layout=True)
    for ax, name in zip(axes[0], sets):
        groups = [[r["score"] for r in rows if r["gene_set"] == name and (r["cancer_type"] or "unknown") == t
                   and r["score"] is not None] for t in types]
        ax.boxplot(groups, showfliers=False)
        ax.set_xticks(range(1, len(types) + 1), types, rotation=45, ha="right")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("predicted score")
    return _png(fig)


def _heatmaps(store: Store, scores: pa.Table, sets: list[str], run) -> list[tuple[str, str]]:
    """Tile heatmaps of each set's top and bottom slides, from a tile-level prompt of the run's kind (not recorded)."""
    out = []
    rows = [r for r in scores.to_pylist() if r["score"] is not None]
    for name in sets:
        ranked = sorted((r for r in rows if r["gene_set"] == name), key=lambda r: r["score"])
        if len(ranked) < 2:
            continue
        picks = [("top", ranked[-1]["sample_id"]), ("bottom", ranked[0]["sample_id"])]
        try:
            tiles = run_prompt(store, resolve_prompts(store, [name]), level="tile", samples=[s for _, s in picks],
                               method=run.method, record=False)
        except HqueryError:  # a set typed as a file that is gone, a slide of precomputed features ...
            continue
        with tempfile.TemporaryDirectory() as folder:
            for label, sid in picks:
                png = render_tile_map(store, sid, tiles.results, name, Path(folder) / f"{label}.png")
                out.append((f"{name}: {label} slide {sid}", base64.b64encode(png.read_bytes()).decode()))
    return out


def _page(run, sets, scores: pa.Table, figures: list[tuple[str, str]]) -> str:
    esc = html.escape
    provenance = [("run", run.run_id), ("created (UTC)", run.created_at), ("method", run.method),
                  ("aggregate", run.aggregate), ("level", run.level), ("k", run.k), ("tau", run.tau),
                  ("alignment model", run.model_version), ("index", run.index_version),
                  ("expression library version", run.library_version), ("slides", run.n_samples)]
    rows = scores.to_pylist()
    set_rows = ""
    for s in sets:
        values = np.array([r["score"] for r in rows if r["gene_set"] == s.gene_set and r["score"] is not None])
        first = next((r for r in rows if r["gene_set"] == s.gene_set), {})
        mean, sd = (values.mean(), values.std()) if len(values) else (None, None)
        set_rows += (f"<tr><td>{esc(s.gene_set)}</td><td>{s.n_found} of {s.n_members}</td>"
                     f"<td>{esc(str(first.get('route')))}</td><td>{_fmt(first.get('trust'))}</td>"
                     f"<td>{_fmt(mean)}</td><td>{_fmt(sd)}</td></tr>")
    columns = ["sample_id"] + (["tile_index"] if run.level == "tile" else []) + [
        "patient_id", "cohort", "cancer_type", "gene_set", "score", "percentile", "dispersion", "effective_k"]
    body = "".join("<tr>" + "".join(f"<td>{esc(_fmt(r[c]))}</td>" for c in columns) + "</tr>" for r in rows)
    images = "".join(f'<figure><img alt="{esc(title)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{esc(title)}</figcaption></figure>" for title, data in figures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hquery run {esc(run.run_id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85rem; margin-bottom: 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }}
th {{ background: #f2f2f2; cursor: pointer; }}
figure {{ display: inline-block; margin: 0 1rem 1rem 0; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Prompt run {esc(run.run_id)}</h1>
<table id="provenance">{"".join(f"<tr><th>{esc(k)}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in provenance)}</table>
<h2>Gene sets</h2>
<p>Route: how each set was answered; held-out R²: that route's accuracy in the newest evaluation that held the set
(blank: never evaluated).</p>
<table id="gene-sets"><tr><th>gene set</th><th>genes found</th><th>route</th><th>held-out R²</th><th>mean score</th>
<th>sd</th></tr>{set_rows}</table>
<h2>Figures</h2>
{images}
<h2>Scores</h2>
<p>{len(rows)} rows; click a column to sort.</p>
<table id="scores" class="sortable"><thead><tr>{"".join(f"<th>{esc(c)}</th>" for c in columns)}</tr></thead>
<tbody>{body}</tbody></table>
<script>
document.querySelectorAll("table.sortable th").forEach(function (th, col) {{
  th.addEventListener("click", function () {{
    var body = th.closest("table").tBodies[0];
    var rows = Array.from(body.rows);
    var up = th.dataset.up !== "1";
    th.dataset.up = up ? "1" : "0";
    rows.sort(function (a, b) {{
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return up ? c : -c;
    }});
    rows.forEach(function (r) {{ body.appendChild(r); }});
  }});
}});
</script>
</body></html>
"""


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)
