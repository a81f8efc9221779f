"""The viewer's web app: a slide list, deep-zoom slides and tile-score overlays over a store (Starlette).

Routes (JSON unless said):

* ``GET /`` the page; ``GET /static/...`` its script and OpenSeadragon.
* ``GET /api/slides?q=&cohort=&cancer_type=&gene_set=`` slides (sorted by that
  set's newest slide-level scores when given, with dispersion and held-out R²).
* ``GET /api/gene-sets`` the catalog's gene sets.
* ``GET /api/slides/{sample}.dzi`` and ``/api/slides/{sample}_files/{level}/{col}_{row}.jpeg``
  the slide as DeepZoom (OpenSlide's generator over the WSI, a region image or
  the tile folder's mosaic).
* ``GET /api/slides/{sample}/tiles?gene_set=`` the newest tile-level scores of a set.
* ``POST /api/prompts`` ``{"sample_id", "genes"}`` starts a tile-level prompt in
  a worker process; ``GET /api/prompts/{job}`` says how it goes. At most
  :attr:`~hquery.viewer.access.ViewerAccess.max_jobs` run or wait at once, and a
  finished job's status is kept for ``job_ttl_s``.

Who may ask is :mod:`hquery.viewer.access`'s to say: the host names it answers
to, same-site ``POST`` only, and beyond loopback a token on every API call.

It reads the store through :class:`~hquery.store.Store` only: a sample id or
gene set is looked up in the catalog and a file is opened only where the
catalog says, so no request names a path. Prompts it runs are recorded like any
other (catalog-only transactions, which never wait for a writer).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import multiprocessing
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from hquery.errors import HqueryError
from hquery.genesets import resolve_prompts
from hquery.ingest.genesets import list_gene_sets
from hquery.ingest.slides import on_white, open_wsi
from hquery.retrieval import run_prompt
from hquery.retrieval.tilemap import tile_side
from hquery.store import Store
from hquery.viewer.access import AccessGuard, ViewerAccess

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
DEEP_ZOOM_TILE = 254
"""DeepZoom tile size (with a 1-pixel overlap, 256 on the wire), OpenSlide's default."""


class NotFound(Exception):
    """A sample, gene set or job the request names does not exist; the message says which."""


@dataclasses.dataclass
class PromptJob:
    sample_id: str
    genes: str
    state: str = "running"
    gene_set: str | None = None
    error: str | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)
    seconds: float | None = None

    def expired(self, ttl_s: float) -> bool:
        return self.seconds is not None and time.monotonic() - self.started - self.seconds > ttl_s


class BadRequest(Exception):
    """A request body the API cannot read; the message says what it expects."""


def create_app(store: Store, access: ViewerAccess | None = None) -> Starlette:
    """The viewer over ``store`` (opened by the caller; the app only reads it and records prompt runs).

    ``access`` says who may use it (default: this machine only, no token; see
    :func:`~hquery.viewer.access.viewer_access`).
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    access = access or ViewerAccess()

    jobs: dict[str, PromptJob] = {}
    pool: list[ProcessPoolExecutor] = []
    """Prompts run in one worker process, so their catalog write and the app's reads are two processes (as two
    commands would be), which DuckDB's file locks and the store's retries keep apart."""

    def slide_row(sample_id: str):
        found = store.query("viewer_slide", [sample_id])
        if not found:
            raise NotFound(f"no slide {sample_id!r} in the store")
        return found[0]

    @functools.lru_cache(maxsize=16)
    def generator(sample_id: str, kind: str, source_path: str, content_hash: str | None, width: int, height: int):
        """A slide's DeepZoom generator, made once (its tile list read once) while the slide's ingest stands."""
        tiles = [(t.x, t.y) for t in store.query("slide_tiles", [sample_id])] if kind == "tiles" else []
        return deep_zoom(kind, Path(source_path), width, height, tiles)

    def slide_zoom(sample_id: str):
        row = slide_row(sample_id)
        if row.source_kind == "features":
            raise NotFound(f"slide {row.sample_id} was ingested as precomputed features: it has no pixels to show")
        return generator(row.sample_id, row.source_kind, row.source_path, row.content_hash, int(row.width),
                         int(row.height))

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def slides(request: Request) -> Response:
        q = request.query_params.get("q", "").lower()
        cohort = request.query_params.get("cohort")
        cancer_type = request.query_params.get("cancer_type")
        gene_set = request.query_params.get("gene_set")
        scores = {r.sample_id: r for r in store.query("viewer_slide_scores", [gene_set, gene_set])} if gene_set else {}
        out = []
        for row in store.query("viewer_slides"):
            if q and q not in row.sample_id.lower() and q not in (row.patient_id or "").lower():
                continue
            if (cohort and row.cohort != cohort) or (cancer_type and row.cancer_type != cancer_type):
                continue
            score = scores.get(row.sample_id)
            out.append({**row._asdict(), "score": score.score if score else None,
                        "dispersion": score.dispersion if score else None, "trust": score.trust if score else None})
        if gene_set:
            out.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0.0)))
        return JSONResponse({"slides": out, "gene_set": gene_set, "scored": len(scores)})

    async def gene_sets(request: Request) -> Response:
        return JSONResponse({"gene_sets": [{"name": r.name, "collection": r.collection, "n_genes": r.n_members}
                                           for r in list_gene_sets(store)]})

    async def dzi(request: Request) -> Response:
        return Response(slide_zoom(request.path_params["sample"]).get_dzi("jpeg"), media_type="application/xml")

    async def dzi_tile(request: Request) -> Response:
        zoom = slide_zoom(request.path_params["sample"])
        level, col, row = (int(request.path_params[k]) for k in ("level", "col", "row"))
        try:
            tile = zoom.get_tile(level, (col, row))
        except ValueError as exc:
            raise NotFound(f"no DeepZoom tile {level}/{col}_{row}: {exc}") from exc
        buffer = io.BytesIO()
        tile.convert("RGB").save(buffer, "jpeg", quality=80)
        return Response(buffer.getvalue(), media_type="image/jpeg")

    async def tile_scores(request: Request) -> Response:
        row = slide_row(request.path_params["sample"])
        gene_set = request.query_params.get("gene_set")
        if not gene_set:
            raise NotFound("name a gene set: ?gene_set=NAME")
        tiles = store.query("viewer_tile_scores", [row.sample_id, gene_set, row.sample_id, gene_set])
        if not tiles:
            raise NotFound(f"no tile scores of {gene_set} for slide {row.sample_id} yet; POST /api/prompts to "
                           f"score it")
        return JSONResponse({"sample_id": row.sample_id, "gene_set": gene_set, "run_id": tiles[0].run_id,
                             "width": row.width, "height": row.height, "tile_side": tile_side(store, row.sample_id),
                             "tiles": [{"tile_index": t.tile_index, "x": t.x, "y": t.y, "score": t.score,
                                        "dispersion": t.dispersion} for t in tiles]})

    async def start_prompt(request: Request) -> Response:
        raw = b""
        async for chunk in request.stream():  # a body sent without a length is counted as it arrives
            raw += chunk
            if len(raw) > access.max_body_bytes:
                return JSONResponse({"error": f"a request body may hold at most {access.max_body_bytes} bytes"},
                                    status_code=413)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"the body is not JSON ({exc}); send {{\"sample_id\": ..., \"genes\": ...}}") from None
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("sample_id", "genes")):
            raise BadRequest('send a JSON object {"sample_id": "...", "genes": "NAME or GENE,GENE,..."} (two strings)')
        row = slide_row(body["sample_id"])
        genes = body["genes"].strip()
        if not genes:
            raise BadRequest("give genes: a gene-set name or GENE,GENE,...")
        n_genes = len([g for g in genes.replace(",", " ").split() if g])
        if n_genes > access.max_genes:
            raise BadRequest(f"{n_genes} genes in one list; the viewer scores at most {access.max_genes} (score "
                             "longer sets with hquery prompt)")
        for old in [k for k, j in jobs.items() if j.expired(access.job_ttl_s)]:
            del jobs[old]
        running = sum(j.state == "running" for j in jobs.values())
        if running >= access.max_jobs:
            return JSONResponse({"error": f"{running} prompts are running or waiting; try again when one ends"},
                                status_code=429, headers={"Retry-After": "5"})
        job_id = uuid.uuid4().hex[:12]
        jobs[job_id] = job = PromptJob(row.sample_id, genes)
        if not pool:
            pool.append(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))

        def finished(future) -> None:
            try:
                state, text = future.result()
            except Exception as exc:  # the worker died: said on the page, not lost
                state, text = "failed", f"{type(exc).__name__}: {exc}"
            job.state = state
            job.gene_set, job.error = (text, None) if state == "done" else (None, text)
            job.seconds = time.monotonic() - job.started

        pool[0].submit(score_tiles, str(store.root), row.sample_id, genes).add_done_callback(finished)
        return JSONResponse({"job": job_id}, status_code=202)

    async def prompt_status(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])
        if job is None:
            raise NotFound(f"no prompt job {request.path_params['job']!r}")
        return JSONResponse({**dataclasses.asdict(job), "elapsed": time.monotonic() - job.started})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        for worker in pool:
            worker.shutdown(wait=False, cancel_futures=True)

    async def not_found(request: Request, exc: NotFound) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=404)

    async def no_route(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"nothing at {request.url.path}"}, status_code=404)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/slides", slides),
            Route("/api/gene-sets", gene_sets),
            Route("/api/slides/{sample}.dzi", dzi),
            Route("/api/slides/{sample}_files/{level:int}/{col:int}_{row:int}.jpeg", dzi_tile),
            Route("/api/slides/{sample}/tiles", tile_scores),
            Route("/api/prompts", start_prompt, methods=["POST"]),
            Route("/api/prompts/{job}", prompt_status),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={NotFound: not_found, HqueryError: bad_request, BadRequest: bad_request, 404: no_route},
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(access.hosts)),
                    Middleware(AccessGuard, access=access)],
        lifespan=lifespan,
    )


def score_tiles(store_root: str, sample_id: str, genes: str) -> tuple[str, str]:
    """A background prompt (in the worker process): ``("done", gene set name)`` or ``("failed", why)``."""
    try:
        store = Store.open(store_root)
        [gene_set] = resolve_prompts(store, [genes])
        run_prompt(store, [gene_set], level="tile", samples=[sample_id])
        return "done", gene_set.name
    except HqueryError as exc:
        return "failed", str(exc)


def deep_zoom(kind: str, source: Path, width: int, height: int, tiles: list[tuple[int, int]]):
    """OpenSlide's DeepZoom generator over a slide: a WSI, a PNG/JPEG region image, or (``kind="tiles"``) the
    mosaic of a tile folder's ``tiles`` at their level-0 places."""
    from openslide import ImageSlide
    from openslide.deepzoom import DeepZoomGenerator

    if kind == "wsi":
        slide = open_wsi(source)
        if not hasattr(slide, "level_count"):  # a PNG/JPEG region image: OpenSlide's ImageSlide reads it whole
            slide = ImageSlide(str(source))
    else:
        slide = ImageSlide(_mosaic(source, width, height, tiles))
    return DeepZoomGenerator(slide, tile_size=DEEP_ZOOM_TILE, overlap=1)


def _mosaic(folder: Path, width: int, height: int, tiles: list[tuple[int, int]]):
    """A tile folder's tiles pasted at their level-0 places on white: the slide a folder stands for."""
    from PIL import Image

    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    for x, y in tiles:
        for suffix in (".png", ".jpg", ".jpeg"):
            path = folder / f"{x}_{y}{suffix}"
            if path.exists():
                with Image.open(path) as tile:
                    canvas.paste(on_white(tile), (x, y))
                break
    return canvas
