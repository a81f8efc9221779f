"""The viewer's API over the small demo, through Starlette's test client (real store, real slides, real prompts)."""

import io
import time
import xml.etree.ElementTree as ET

import pytest
from PIL import Image
from starlette.testclient import TestClient

from hquery.genesets import resolve_prompts
from hquery.retrieval import run_prompt
from hquery.viewer import create_app

SET = "HALLMARK_HYPOXIA"


@pytest.fixture(scope="module")
def client(store):
    with TestClient(create_app(store), base_url="http://127.0.0.1:8765") as c:
        yield c


@pytest.fixture(scope="module")
def slide(store):
    return store.sql("select sample_id, width, height from slides order by n_tiles desc, sample_id limit 1").to_pylist()[0]


def test_the_page_and_its_scripts_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "openseadragon.min.js" in page.text and "viewer.js" in page.text
    assert client.get("/static/openseadragon.min.js").status_code == 200
    assert client.get("/static/viewer.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_slides_are_listed_filtered_and_sorted_by_a_sets_scores(client, store):
    every = client.get("/api/slides").json()["slides"]
    assert len(every) == store.query("store_counts")[0].slides
    one_type = every[0]["cancer_type"]
    filtered = client.get("/api/slides", params={"cancer_type": one_type}).json()["slides"]
    assert filtered and all(s["cancer_type"] == one_type for s in filtered) and len(filtered) < len(every)
    found = client.get("/api/slides", params={"q": every[3]["sample_id"]}).json()["slides"]
    assert every[3]["sample_id"] in [s["sample_id"] for s in found]
    run_prompt(store, resolve_prompts(store, [SET]))
    ranked = client.get("/api/slides", params={"gene_set": SET}).json()
    scores = [s["score"] for s in ranked["slides"]]
    assert ranked["scored"] == len(every) and scores == sorted(scores, reverse=True)
    assert all(s["dispersion"] is not None for s in ranked["slides"])
    assert any(g["name"] == SET for g in client.get("/api/gene-sets").json()["gene_sets"])


def test_a_slide_is_served_as_deep_zoom(client, slide):
    dzi = client.get(f"/api/slides/{slide['sample_id']}.dzi")
    assert dzi.status_code == 200
    size = ET.fromstring(dzi.text).find("{http://schemas.microsoft.com/deepzoom/2008}Size")
    assert (int(size.get("Width")), int(size.get("Height"))) == (slide["width"], slide["height"])
    top = max(1, max(slide["width"], slide["height"]) - 1).bit_length()  # the full-resolution level
    tile = client.get(f"/api/slides/{slide['sample_id']}_files/{top}/0_0.jpeg")
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"
    pixels = Image.open(io.BytesIO(tile.content))
    assert pixels.size[0] > 1 and pixels.convert("L").getextrema()[0] < pixels.convert("L").getextrema()[1]  # slide pixels, not a blank tile
    assert client.get(f"/api/slides/{slide['sample_id']}_files/{top}/999_999.jpeg").status_code == 404


def test_tile_scores_come_from_a_background_prompt(client, store, slide):
    sid = slide["sample_id"]
    missing = client.get(f"/api/slides/{sid}/tiles", params={"gene_set": "HALLMARK_G2M_CHECKPOINT"})
    assert missing.status_code == 404 and "POST /api/prompts" in missing.json()["error"]
    job = client.post("/api/prompts", json={"sample_id": sid, "genes": "G2M"}).json()["job"]
    for _ in range(600):
        status = client.get(f"/api/prompts/{job}").json()
        if status["state"] != "running":
            break
        time.sleep(0.2)
    assert status["state"] == "done", status
    assert status["gene_set"] == "HALLMARK_G2M_CHECKPOINT"
    scores = client.get(f"/api/slides/{sid}/tiles", params={"gene_set": status["gene_set"]}).json()
    recorded = store.sql(f"select tile_index, score from prompt_results_all where run_id = '{scores['run_id']}' "
                         f"order by tile_index").to_pylist()
    assert [(t["tile_index"], t["score"]) for t in scores["tiles"]] == [(r["tile_index"], r["score"]) for r in recorded]
    assert scores["tile_side"] > 0 and len(scores["tiles"]) == store.sql(
        f"select n_tiles from slides where sample_id = '{sid}'").to_pylist()[0]["n_tiles"]


def test_unknown_names_are_404s_that_say_what_is_missing(client, slide):
    for url in ("/api/slides/NOPE.dzi", "/api/slides/NOPE/tiles?gene_set=X", "/api/slides/..%2F..%2Fpasswd.dzi",
                "/api/prompts/nope"):
        response = client.get(url)
        assert response.status_code == 404 and response.json()["error"], url
    assert client.get("/api/slides/../../etc/passwd.dzi").status_code == 404
    assert "no slide 'NOPE'" in client.get("/api/slides/NOPE.dzi").json()["error"]
    failed = client.post("/api/prompts", json={"sample_id": slide["sample_id"], "genes": "NOT_A_SET_AT_ALL"}).json()
    for _ in range(100):
        status = client.get(f"/api/prompts/{failed['job']}").json()
        if status["state"] != "running":
            break
        time.sleep(0.1)
    assert status["state"] == "failed" and "NOT_A_SET_AT_ALL" in status["error"]
    assert client.post("/api/prompts", json={"sample_id": "NOPE", "genes": "G2M"}).status_code == 404
