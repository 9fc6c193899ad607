"""The page at ``GET /`` in a real browser (slow): headless Chromium (tests/runtime/chromium.py,
DevTools protocol on a pipe) against a real ``sal-runtime serve`` with a token on a toy coop
bundle. It asks for the token, shows the server's one-line errors for no file, a non-image file
and a file over the limit, then uploads a PASCAL-S photograph: the saliency and uncertainty maps
it shows have the pixels of ``/predict``'s PNGs for the same photo, and "refine a map" shows the
refine model's answer. ``make test`` installs Chromium first (scripts/chromium_env.sh); without it,
or without ../shared/data/pascal-s, the test skips and says why. Every wait is bounded and
generous (a loaded 2-core machine): none times anything.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.runtime.chromium import BrowserError, Chromium, Page, find_chromium
from tests.runtime.server_helpers import AUTH, ROOT, SAL_RUNTIME, TOKEN, binary_request, decode_response, live_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
PASCAL_S = ROOT.parent / "shared" / "data" / "pascal-s"
PHOTO = PASCAL_S / "img" / "1.jpg"
TRUTH = PASCAL_S / "gt" / "1.png"  # the photo's ground-truth mask: the map to refine
WAIT = 120.0  # seconds for any one step of the page; none takes more than a few


def _state(page: Page) -> str:
    return json.dumps(page.evaluate("({state: document.body.dataset.state, error: $('error').textContent, status: $('status').textContent})"))


def _wait(page: Page, expression: str) -> None:
    try:
        page.wait_for(expression, timeout=WAIT)
    except BrowserError as err:
        raise AssertionError(f"{err}; the page shows {_state(page)}") from None


def _shown_error(page: Page, expected: str) -> None:
    _wait(page, f"document.body.dataset.state === 'error' && $('error').textContent === {json.dumps(expected)}")


# The pixels of an <img> as the page shows it: drawn on a canvas, read back as RGBA.
PIXELS = """(async () => {
  const img = $(%s);
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let text = "";
  for (let i = 0; i < data.length; i += 8192) text += String.fromCharCode.apply(null, data.subarray(i, i + 8192));
  return {width: canvas.width, height: canvas.height, rgba: btoa(text), query: img.dataset.query || null};
})()"""


def _shown_map(page: Page, element: str) -> tuple[np.ndarray, str | None]:
    """The grey map an <img> shows (H, W) uint8, and the request the page made for it."""
    got = page.evaluate(PIXELS % json.dumps(element), timeout=WAIT)
    rgba = np.frombuffer(base64.b64decode(got["rgba"]), dtype=np.uint8).reshape(got["height"], got["width"], 4)
    assert (rgba[..., 3] == 255).all() and (rgba[..., 0] == rgba[..., 1]).all() and (rgba[..., 1] == rgba[..., 2]).all()
    return rgba[..., 0], got["query"]


def test_the_page_in_chromium_shows_the_predict_answer(toy_coop, tmp_path: Path) -> None:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium on PATH or at $SALKIT_CHROMIUM: `make chromium-env` installs Debian's chromium (scripts/chromium_env.sh)")
    if not PHOTO.is_file() or not TRUTH.is_file():
        pytest.skip(f"no PASCAL-S photograph at {PHOTO} (the shared data set is not on this machine)")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    args = [SAL_RUNTIME, "serve", "--engine", str(toy_coop.path), "--backend", "ort-cpu", "--precision", "fp32", "--threads", "1",
            "--max-body-mb", "2", "--token-file", str(token_file), "--log-level", "warning"]  # fmt: skip
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("a shopping list, not a photograph\n")
    too_large = tmp_path / "huge.jpg"
    too_large.write_bytes(PHOTO.read_bytes() + b"\0" * (2 << 20))  # the refine request of the photo (7 B a pixel) fits in 2 MiB
    photo = PHOTO.read_bytes()

    with (
        live_server(args, ready_timeout=WAIT) as (proc, url),
        Chromium.launch(tmp_path / "profile", binary) as browser,
        httpx.Client(base_url=url, timeout=WAIT) as http,
    ):
        page = browser.new_page()
        page.evaluate("1")  # the session works before the page exists
        page.navigate(url + "/", timeout=WAIT)

        # With --token-file the page asks for the token: without it the API answers 401.
        _shown_error(page, http.get("/?format=json").json()["error"])
        assert page.evaluate("!$('token-row').hidden")
        page.evaluate(f"$('token').value = {json.dumps(TOKEN)}, $('token').dispatchEvent(new Event('change'))")
        _wait(page, "document.body.dataset.state === 'ready'")
        info = http.get("/?format=json", headers=AUTH).json()
        assert info["model_name"] == "toy_coop" and info["plan"] == "ort-cpu:fp32"
        assert page.evaluate("$('info').textContent") == "toy_coop (coop bundle, input 32²), plan ort-cpu:fp32"

        # Bad input: the server's one line each time, and the server keeps serving.
        page.evaluate("$('run').click()")  # no file chosen
        empty_form = {**AUTH, "Content-Type": "multipart/form-data; boundary=x"}
        _shown_error(page, http.post("/predict", content=b"--x--\r\n", headers=empty_form).json()["error"])
        page.set_files("#photo", [not_an_image])
        _shown_error(page, http.post("/predict", files={"image": ("notes.txt", not_an_image.read_bytes())}, headers=AUTH).json()["error"])
        page.set_files("#photo", [too_large])
        refused = http.post("/predict", content=too_large.read_bytes(), headers=AUTH)
        assert refused.status_code == 413
        _shown_error(page, refused.json()["error"])
        assert http.get("/v2/health/ready").status_code == 200 and proc.poll() is None

        # A PASCAL-S photograph, with its ground truth as the map to refine.
        page.set_files("#refine-map", [TRUTH])  # the chosen photo is still too large: one more error, the same
        _shown_error(page, refused.json()["error"])
        page.drop_files("#drop", [PHOTO])  # dropped, as a user drags a photograph in
        _wait(page, "document.body.dataset.state === 'done'")
        assert page.evaluate("$('photo').files[0].name") == PHOTO.name
        width, height = Image.open(PHOTO).size
        for element, query in (("out-saliency", "/predict?seed=0"), ("out-uncertainty", "/predict?output=predictive&seed=0")):
            shown, asked = _shown_map(page, element)
            assert asked == query
            r = http.post(query, files={"image": (PHOTO.name, photo, "image/jpeg")}, headers=AUTH)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            answer = np.asarray(Image.open(io.BytesIO(r.content)))
            assert shown.shape == answer.shape == (height, width)
            np.testing.assert_array_equal(shown, answer, err_msg=element)
        assert len(np.unique(_shown_map(page, "out-saliency")[0])) > 10  # a map, not a flat image

        # Refine: the browser decoded photo and map; the same request from PIL's decoding.
        refined, asked = _shown_map(page, "out-refined")
        assert asked == "/v2/models/refine/infer" and refined.shape == (height, width)
        rgb = np.asarray(Image.open(PHOTO).convert("RGB"))[None]
        truth = (np.asarray(Image.open(TRUTH).convert("L"), dtype=np.float32) / 255)[None, None]
        binary_map = [{"name": "MAP", "parameters": {"binary_data": True}}]
        body, headers = binary_request([("IMAGE", rgb, "UINT8"), ("MAP", truth, "FP32")], outputs=binary_map)
        r = http.post("/v2/models/refine/infer", content=body, headers={**AUTH, **headers})
        assert r.status_code == 200, r.text
        want = np.rint(np.clip(decode_response(r.content, r.headers)["MAP"][0, 0], 0, 1) * 255)
        # Chromium's and PIL's JPEG decoders may differ by a grey level here and there.
        difference = np.abs(refined.astype(int) - want)
        assert difference.mean() < 1.0, f"mean |difference| {difference.mean():.3f} grey levels, max {difference.max()}"

        timing = page.evaluate("$('timing').textContent")
        assert all(f"{what} " in timing for what in ("saliency", "predictive", "refined")) and " ms" in timing
        problems = [p for p in page.problems() if "Failed to load resource" not in p]  # the 400/401/413 answers above
        assert problems == [], problems
        assert proc.poll() is None
