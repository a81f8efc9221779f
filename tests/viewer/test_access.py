"""Who may use the viewer: hosts, origins, bodies, the token beyond loopback and the job limits, over the real app
(Starlette's test client on the small demo store) and, for the token, the real `hquery view` process."""

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from starlette.testclient import TestClient

from hquery.viewer import ViewerAccess, create_app, viewer_access
from hquery.viewer.access import OPENSEADRAGON_INLINE_CSS, is_loopback
from hquery.viewer.app import STATIC
from tests.conftest import free_port

LOCAL = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def slide(store):
    return store.sql("select sample_id from slides order by sample_id limit 1").to_pylist()[0]["sample_id"]


def prompt_runs(store) -> int:
    return store.sql("select count(*) n from prompt_runs").to_pylist()[0]["n"]


def wait_done(client, job: str, seconds: float = 300) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = client.get(f"/api/prompts/{job}").json()
        if status["state"] != "running":
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job} still running after {seconds} s")


def test_every_answer_carries_a_policy_that_runs_only_the_viewers_own_scripts(store):
    with TestClient(create_app(store), base_url=LOCAL) as client:
        for url in ("/", "/static/viewer.js", "/api/slides", "/api/slides/NOPE.dzi"):
            policy = client.get(url).headers["content-security-policy"]
            assert "script-src 'self';" in policy and "default-src 'none'" in policy and "unsafe" not in policy
        page = client.get("/").text
        assert "<script>" not in page and "<style>" not in page and "innerHTML" not in client.get(
            "/static/viewer.js").text
    # the one inline style the policy allows by hash is OpenSeadragon's own, as shipped
    assert OPENSEADRAGON_INLINE_CSS in (STATIC / "openseadragon.min.js").read_text()


def test_foreign_hosts_and_cross_site_posts_are_refused_and_record_nothing(store, slide):
    before = prompt_runs(store)
    body = '{"sample_id": "%s", "genes": "G2M"}' % slide
    with TestClient(create_app(store), base_url=LOCAL) as client:
        assert client.get("/api/slides", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
        assert client.get("/api/slides", headers={"Host": "localhost:8765"}).status_code == 200
        refused = client.post("/api/prompts", content=body, headers={
            "Origin": "http://evil.example", "Content-Type": "text/plain"})
        assert refused.status_code == 403 and "cross-site" in refused.json()["error"]
        refused = client.post("/api/prompts", content=body, headers={
            "Origin": "http://evil.example", "Content-Type": "application/json"})
        assert refused.status_code == 403
        refused = client.post("/api/prompts", content=body, headers={
            "Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"})
        assert refused.status_code == 403
        refused = client.post("/api/prompts", content=body, headers={"Content-Type": "text/plain"})
        assert refused.status_code == 415 and "JSON" in refused.json()["error"]
        same_site = client.post("/api/prompts", content=body, headers={
            "Origin": LOCAL, "Content-Type": "application/json"})
        assert same_site.status_code == 202
        assert wait_done(client, same_site.json()["job"])["state"] == "done"
    assert prompt_runs(store) == before + 1  # only the same-site prompt ran


@pytest.mark.parametrize("body, says", [
    ("{not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    ('{"sample_id": "S"}', "two strings"),
    ('{"sample_id": 7, "genes": "G2M"}', "two strings"),
    ('{"sample_id": "SLIDE", "genes": "   "}', "give genes"),
    ('{"sample_id": "SLIDE", "genes": "%s"}' % ",".join(f"G{i}" for i in range(2001)), "at most 2000"),
    (b'{"genes": "\xff\xfe"}', "not JSON"),
])
def test_malformed_bodies_are_400s_that_say_what_to_send(store, slide, body, says):
    body = body.replace(b"SLIDE", slide.encode()) if isinstance(body, bytes) else body.replace("SLIDE", slide)
    with TestClient(create_app(store), base_url=LOCAL) as client:
        answer = client.post("/api/prompts", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and says in answer.json()["error"], answer.text


def test_a_body_past_the_limit_is_refused_before_it_is_read(store, slide):
    with TestClient(create_app(store, ViewerAccess(max_body_bytes=100)), base_url=LOCAL) as client:
        answer = client.post("/api/prompts", json={"sample_id": slide, "genes": "G2M " * 40})
    assert answer.status_code == 413 and "100 bytes" in answer.json()["error"]

    def streamed():  # chunked, with no Content-Length to refuse it by
        yield b'{"sample_id": "%s", "genes": "' % slide.encode()
        for _ in range(40):
            yield b"G2M "
        yield b'"}'

    with TestClient(create_app(store, ViewerAccess(max_body_bytes=100)), base_url=LOCAL) as client:
        answer = client.post("/api/prompts", content=streamed(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "100 bytes" in answer.json()["error"]


def test_the_token_is_needed_on_every_api_call_and_handed_over_once_as_a_cookie(store):
    access = ViewerAccess(token="s3cret-token")
    with TestClient(create_app(store, access), base_url=LOCAL) as client:
        for url in ("/api/slides", "/api/gene-sets", "/api/prompts/x", "/api/slides/S.dzi"):
            refused = client.get(url)
            assert refused.status_code == 401 and "token" in refused.json()["error"], url
        assert client.get("/api/slides", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/slides", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert client.get("/").status_code == 200  # the page itself holds no data
        assert client.get("/?token=wrong", follow_redirects=False).status_code == 401
        handed = client.get("/?token=s3cret-token", follow_redirects=False)
        assert handed.status_code == 303 and handed.headers["location"] == "/"
        assert "HttpOnly" in handed.headers["set-cookie"] and "SameSite=Strict" in handed.headers["set-cookie"]
        assert client.get("/api/slides").status_code == 200  # the cookie now goes with each call
        assert client.get("/api/slides", headers={"Cookie": "hquery_token=\u00e9\u00e9".encode("latin-1")}).status_code == 401


def test_prompt_jobs_are_bounded_and_finished_ones_expire(store, slide):
    with TestClient(create_app(store, ViewerAccess(max_jobs=1, job_ttl_s=0.0)), base_url=LOCAL) as client:
        first = client.post("/api/prompts", json={"sample_id": slide, "genes": "HYPOXIA"})
        second = client.post("/api/prompts", json={"sample_id": slide, "genes": "G2M"})
        assert first.status_code == 202
        assert second.status_code == 429 and "running or waiting" in second.json()["error"]
        job = first.json()["job"]
        assert wait_done(client, job)["state"] == "done"
        time.sleep(0.05)
        third = client.post("/api/prompts", json={"sample_id": slide, "genes": "G2M"})
        assert third.status_code == 202  # the finished job freed its place, and its status has gone
        assert client.get(f"/api/prompts/{job}").status_code == 404
        assert wait_done(client, third.json()["job"])["state"] == "done"


def test_access_beyond_loopback_always_has_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert viewer_access("127.0.0.1").token is None
    wide = viewer_access("0.0.0.0", extra_hosts=["slides.lab.example"])
    assert wide.token and wide.token != viewer_access("0.0.0.0").token  # random, made each time
    assert "slides.lab.example" in wide.hosts and "0.0.0.0" not in wide.hosts
    assert viewer_access("0.0.0.0", token="mine").token == "mine"


def test_hquery_view_beyond_loopback_prints_its_token_and_refuses_calls_without_it(store, tmp_path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HQUERY_VIEW_TOKEN", None)
    log = tmp_path / "view.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "hquery", "view", "--host", "0.0.0.0", "--port", str(port),
                                   "--store", str(store.root)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline, token = time.monotonic() + 60, None
        while time.monotonic() < deadline and token is None:
            found = re.search(r"\?token=([\w-]+)", log.read_text())
            token = found and found.group(1)
            time.sleep(0.2)
        assert token, log.read_text()
        url = f"http://127.0.0.1:{port}/api/slides"
        for _ in range(100):  # until uvicorn listens
            try:
                urllib.request.urlopen(url, timeout=5)
            except urllib.error.HTTPError as refused:
                assert refused.code == 401
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"the viewer did not answer: {log.read_text()}")
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}),
                                    timeout=30) as answer:
            assert answer.status == 200
    finally:
        server.terminate()
        server.wait(30)
