"""``GET /``: the page to try a photograph (salkit.runtime.server.page), in-process on the fake
predictor. The page in a real browser is tests/runtime/test_page_browser.py (slow)."""

from __future__ import annotations

import base64
import hashlib
import re
import threading

import pytest

from salkit.runtime.server.app import create_app
from tests.runtime.fake_predictor import FakePredictor
from tests.runtime.server_helpers import AUTH, TOKEN, make_client, wait_ready

pytestmark = pytest.mark.timeout(120)
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def client():
    app = create_app(lambda: FakePredictor(), max_delay_ms=1, max_body_bytes=LIMIT, token=TOKEN)
    with make_client(app) as c:
        wait_ready(c)
        yield c


def _csp_sources(policy: str, directive: str) -> list[str]:
    for part in policy.split(";"):
        name, *sources = part.split()
        if name == directive:
            return sources
    raise AssertionError(f"no {directive} in {policy!r}")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_page_is_one_self_contained_html_file(client) -> None:
    r = client.get("/")  # no token: a browser opening the URL cannot send one
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert html.startswith("<!doctype html>") and "</html>" in html
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.IGNORECASE), "no external URL of any kind"
    assert not re.search(r"<link[^>]*stylesheet|<script[^>]*\bsrc=|<iframe|<object|<embed", html, re.IGNORECASE)
    assert set(re.findall(r'\b(?:src|href)="([^"]*)"', html)) <= {"data:,"}  # only the empty favicon
    for route in ("/?format=json", "/predict", "/v2/models/", "/infer", "Inference-Header-Content-Length", "Authorization"):
        assert route in html, route
    # The browser runs the inline script and style only if the policy names their hashes.
    policy = r.headers["content-security-policy"]
    (script,) = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    (style,) = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    assert "url(" not in style and "@import" not in style
    assert _csp_sources(policy, "default-src") == ["'none'"] and _csp_sources(policy, "connect-src") == ["'self'"]
    assert _sha256(script) in _csp_sources(policy, "script-src") and _sha256(style) in _csp_sources(policy, "style-src")
    assert client.head("/").status_code == 200


def test_with_a_token_the_api_still_answers_401_without_it(client) -> None:
    assert client.get("/?format=json").status_code == 401
    assert client.get("/?format=html").status_code == 401  # any ?format is the page's data, not the page
    for method, path in (("POST", "/predict"), ("POST", "/v2/models/refine/infer"), ("GET", "/v2/models/saliency"), ("GET", "/metrics")):
        r = client.request(method, path, content=b"\xff\xd8 not really a jpeg")
        assert r.status_code == 401 and "bearer token" in r.json()["error"], (method, path)
    assert client.post("/", content=b"x").status_code == 401  # only GET and HEAD of the page are public
    assert client.get("/?format=json", headers=AUTH).status_code == 200


def test_the_page_data_names_model_plan_and_limits(client) -> None:
    info = client.get("/?format=json", headers=AUTH).json()
    assert info == {
        "model_name": "fake_coop",
        "kind": "coop",
        "plan": "fake",  # the fake names a backend only; a Predictor answers "backend:precision"
        "input_size": 16,
        "models": ["saliency", "refine"],
        "takes_samples": True,
        "uncertainty": True,
        "uncertainty_channels": ["predictive", "aleatoric", "epistemic"],
        "refine_model": "refine",
        "max_body_bytes": LIMIT,
        "body_too_large": info["body_too_large"],
    }
    # The line the page shows for a file over the limit is the server's own 413 line.
    r = client.post("/predict", content=b"\0" * (LIMIT + 1), headers=AUTH)
    assert r.status_code == 413 and r.json()["error"] == info["body_too_large"]
    r = client.get("/?format=xml", headers=AUTH)
    assert r.status_code == 400 and "format='xml'" in r.json()["error"]


def test_the_page_data_of_a_qefpn_bundle_and_without_a_token() -> None:
    app = create_app(lambda: FakePredictor("qefpn"), max_delay_ms=1)
    with make_client(app) as c:
        wait_ready(c)
        info = c.get("/?format=json").json()  # no token configured: no auth anywhere, as before
        assert (info["kind"], info["models"], info["refine_model"]) == ("qefpn", ["qefpn"], None)
        assert not info["uncertainty"] and not info["takes_samples"] and info["uncertainty_channels"] == []
        assert c.get("/").status_code == 200


def test_the_page_is_served_while_the_model_loads() -> None:
    gate = threading.Event()

    def load() -> FakePredictor:
        gate.wait(30)
        return FakePredictor()

    app = create_app(load, max_delay_ms=1, token=TOKEN)
    with make_client(app) as c:
        try:
            assert c.get("/").status_code == 200
            r = c.get("/?format=json", headers=AUTH)
            assert r.status_code == 503 and r.json() == {"error": "model is loading"}  # the page asks again
        finally:
            gate.set()
        wait_ready(c)
        assert c.get("/?format=json", headers=AUTH).json()["model_name"] == "fake_coop"


@pytest.mark.parametrize(
    ("files", "content", "message"),
    [
        (None, b"--x--\r\n", "multipart body has no file"),  # the page's request without a chosen file
        ({"image": ("notes.txt", b"hello", "text/plain")}, None, "notes.txt is not an image file"),
    ],
)
def test_bad_uploads_get_one_line_and_the_server_keeps_serving(client, files, content, message) -> None:
    headers = dict(AUTH)
    if content is not None:
        headers["Content-Type"] = "multipart/form-data; boundary=x"
    r = client.post("/predict?seed=0", files=files, content=content, headers=headers)
    assert r.status_code == 400 and message in r.json()["error"] and "\n" not in r.json()["error"]
    assert client.get("/v2/health/ready").status_code == 200
