"""The viewer and a run's report in a real headless browser (Debian's chromium and chromium-driver, via selenium).

Opens the viewer on the small demo, picks a slide and a gene set, waits for the
heatmap, and checks the page and its pixels; then opens a report and checks
that it renders with its images and no console errors. Skipped, with the
reason, where no browser is installed (`make test` installs one where it can).
Set ``HQUERY_SCREENSHOT=PATH`` to keep the viewer's screenshot (docs/figures/viewer.png is made so).
"""

import io
import os
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

from hquery.export import write_report
from hquery.genesets import resolve_prompts
from hquery.retrieval import run_prompt
from hquery.viewer import create_app
from tests.conftest import copy_store, free_port

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no chromium + chromedriver here (Debian: apt-get install "
                                                          "chromium chromium-driver); the browser tests need them"),
]
SET = "HALLMARK_HYPOXIA"


@pytest.fixture(scope="module")
def store(indexed_store, tmp_path_factory):
    store = copy_store(indexed_store, tmp_path_factory.mktemp("browser") / "store")
    run_prompt(store, resolve_prompts(store, [SET]))  # slide-level scores to sort the list by
    return store


@pytest.fixture(scope="module")
def server(store):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(browser, script: str, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.25)
    status = browser.execute_script("const s = document.getElementById('status'); return s && s.textContent")
    raise AssertionError(f"timed out waiting for: {script} (the page says: {status})")


def test_the_viewer_draws_a_sets_tile_scores_over_the_slide(browser, server, store, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/")
    wait_for(browser, "return document.querySelectorAll('#slides tr.slide').length")
    Select(browser.find_element(By.ID, "sort-set")).select_by_value(SET)
    wait_for(browser, "return document.querySelector('#slides tr.slide td:nth-child(3)').textContent !== ''")
    top = browser.find_element(By.CSS_SELECTOR, "#slides tr.slide")
    sample = top.get_attribute("data-sample")
    best = store.sql(f"select sample_id from prompt_results where gene_set = '{SET}' and level = 'slide' "
                     f"order by score desc limit 1").to_pylist()[0]["sample_id"]
    assert sample == best  # sorted by the set's recorded scores
    browser.find_element(By.ID, "genes").send_keys(SET)
    top.click()
    browser.find_element(By.ID, "show").click()
    wait_for(browser, "return document.getElementById('heatmap') !== null")
    status = browser.find_element(By.ID, "status").text
    assert SET in status and sample in status
    n_tiles = store.sql(f"select n_tiles from slides where sample_id = '{sample}'").to_pylist()[0]["n_tiles"]
    assert f"on {n_tiles} tiles" in status
    painted = browser.execute_script("""
        const c = document.getElementById('heatmap'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) { n++; } } return [n, c.width * c.height];""")
    assert 0 < painted[0] <= painted[1]  # the tiles are painted, and only where tiles are
    time.sleep(1.0)  # let the deep-zoom tiles arrive
    shot = Image.open(io.BytesIO(browser.find_element(By.ID, "viewer").screenshot_as_png)).convert("RGB")
    pixels = np.asarray(shot).reshape(-1, 3).astype(int)
    warm = ((pixels[:, 0] - pixels[:, 2]) > 60).mean()  # the heatmap's oranges and magentas over the slide
    assert warm > 0.01, f"only {warm:.3%} of the view carries the overlay's colours"
    if os.environ.get("HQUERY_SCREENSHOT"):
        browser.save_screenshot(os.environ["HQUERY_SCREENSHOT"])
    # the one 404 expected: the slide had no tile scores of the set yet, so the page started a prompt
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"
              and not ("/tiles?gene_set=" in e["message"] and "404" in e["message"])]
    assert not errors, errors


def test_a_report_renders_with_its_images_and_no_errors(browser, store, tmp_path):
    run = run_prompt(store, resolve_prompts(store, [SET, "HALLMARK_G2M_CHECKPOINT"]))
    report = write_report(store, run.run_id, tmp_path / "report.html")
    browser.get(report.path.as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(images) == report.n_figures == 5 and all(done and width > 0 for done, width in images)
    assert browser.execute_script("return document.querySelectorAll('#scores tbody tr').length") == report.n_rows
    column = browser.execute_script(
        "return Array.from(document.querySelectorAll('#scores th')).findIndex(th => th.textContent === 'score')")
    for _ in range(2):  # ascending, then descending
        browser.execute_script(f"document.querySelectorAll('#scores th')[{column}].click()")
    first = float(browser.execute_script(
        f"return document.querySelector('#scores tbody tr').cells[{column}].textContent"))
    assert first == pytest.approx(max(run.results["score"].to_pylist()), rel=1e-3)
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


MARKUP = "<img src=x onerror=\"document.title='pwned'\">"
"""What a collaborator's manifest may hold: were it parsed as HTML, the page's title would change."""


@pytest.fixture(scope="module")
def markup_store(indexed_store, tmp_path_factory):
    """The indexed small demo plus two query slides whose ids, cancer type and clinical column are markup, and a
    gene set whose name is markup, scored at slide level."""
    import polars as pl

    from hquery.genesets import GeneSet, hallmark_sets
    from hquery.ingest import ingest_cohort
    from hquery.ingest.genesets import add_gene_sets
    from tests.conftest import write_cohort

    root = tmp_path_factory.mktemp("markup")
    store = copy_store(indexed_store, root / "store")
    manifest, _ = write_cohort(root / "cohort", n_pairs=0, n_ref=0, n_query=2, prefix=MARKUP)
    pl.read_csv(manifest).with_columns(pl.lit(f"<b>{MARKUP}</b>").alias("cancer_type"),
                                       pl.lit("<script>document.title='pwned'</script>").alias("grade")
                                       ).write_csv(manifest)
    ingest_cohort(store, manifest)
    hypoxia = next(gs for gs in hallmark_sets() if gs.name == SET)
    markup_set = GeneSet(f"{MARKUP}SET", hypoxia.members, "markup", "a test")
    add_gene_sets(store, [markup_set])
    run_prompt(store, [markup_set])
    return store, markup_set.name


def test_markup_in_a_manifest_shows_as_typed_and_never_runs(browser, markup_store):
    import uvicorn
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    store, set_name = markup_store
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.1)
        browser.get(f"http://127.0.0.1:{port}/")
        wait_for(browser, "return document.querySelectorAll('#slides tr.slide').length")
        names = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "sort-set")).options]
        Select(browser.find_element(By.ID, "sort-set")).select_by_index(names.index(set_name))  # listed as typed
        wait_for(browser, "return document.getElementById('trust').textContent !== ''")
        cells = browser.execute_script(
            "return Array.from(document.querySelectorAll('#slides tr.slide')).map(tr => [tr.cells[0].textContent, "
            "tr.cells[1].textContent])")
        assert [f"{MARKUP}S000", f"<b>{MARKUP}</b>"] in cells and [f"{MARKUP}S001", f"<b>{MARKUP}</b>"] in cells
        assert set_name in browser.find_element(By.ID, "trust").text  # the set's name, as text
        assert browser.execute_script("return document.querySelectorAll('#side img, #side b, #side script, "
                                      "#bar img').length") == 0
        browser.find_element(By.ID, "genes").send_keys(set_name)
        browser.execute_script("document.querySelector('#slides tr.slide').click()")
        time.sleep(1.0)
        assert browser.title == "hquery viewer"  # no onerror ran
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
                    and "Content Security Policy" in e["message"]]
    finally:
        server.should_exit = True
        thread.join(10)
