"""``GET /``: one self-contained page to try the served bundle from a browser.

Choose or drop a photograph and the page shows its saliency map (a coop bundle's Ỹ), for coop
bundles also an uncertainty map, and for bundles that refine, the refined map of an optional
uploaded map; the model name, plan (backend:precision) and each request's round-trip time.

The page is HTML with its CSS and script inline and nothing loaded from elsewhere (a serving host
may be offline); its Content-Security-Policy allows only this script and style (by hash) and
requests to this server, so an external asset added by mistake fails in the browser too. It uses
only the server's own routes:

* ``GET /?format=json``: what the page shows and needs (model name, kind, plan, served models,
  the body limit and its error line); 503 with the reason while the model loads;
* ``POST /predict`` (multipart field ``image``) for each map, as PNG. A coop request carries the
  page's ``seed``, so the saliency and uncertainty PNGs come from the same samples;
* ``POST /v2/models/refine/infer`` (binary tensors) for "refine a map": the browser decodes the
  photograph and the map (the map resized to the photograph) and sends ``IMAGE`` and ``MAP``.

Auth: with ``--token-file`` the HTML itself is served without the token (a browser opening a URL
cannot send a bearer header, and the page holds nothing about the model), while
``/?format=json`` and every API route the page calls keep answering 401 without it; on a 401 the
page asks for the token and sends it as ``Authorization: Bearer`` (salkit.runtime.server.guard).
Errors are the server's one-line ``{"error": ...}``, shown as they come; a file larger than the
body limit is refused in the page with the server's own 413 line, before uploading it.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from salkit.runtime.kinds import get_kind
from salkit.runtime.server.guard import BodyTooLarge
from salkit.runtime.server.models import UNCERTAINTY_CHANNELS
from salkit.runtime.server.protocol import ProtocolError

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:74rem;padding:1rem;color:#222}
h1{font-size:1.3rem;margin:.2rem 0}
#info{color:#555;margin:.2rem 0 .8rem}
.drop{display:block;border:2px dashed #999;border-radius:8px;padding:1.1rem;text-align:center;cursor:pointer}
.drop.over{border-color:#06c;background:#eef5ff}
.row{display:flex;flex-wrap:wrap;gap:.6rem 1.2rem;align-items:center;margin:.7rem 0}
#error{color:#b00;font-weight:600;white-space:pre-wrap;min-height:1.2em}
#status,#timing{color:#555;min-height:1.2em}
#seed{width:7em}
.maps{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;max-width:22rem}
figure img{max-width:100%;display:block;background:#eee}
figcaption{font-size:.85rem;color:#444}
[hidden]{display:none!important}
"""

_SCRIPT = r"""
"use strict";
const $ = (id) => document.getElementById(id);
let info = null;
let generation = 0;

function setState(state, status) {
  document.body.dataset.state = state;
  $("status").textContent = status || "";
}
function setError(message) {
  $("error").textContent = message;
  if (message) setState("error", "");
}
function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  const token = $("token").value.trim();
  if (token) headers["Authorization"] = "Bearer " + token;
  return headers;
}
// The server answers errors as {"error": "one line"}: that line is what the page shows.
async function errorOf(response) {
  let line = "";
  try { line = (await response.json()).error || ""; } catch (err) { line = ""; }
  if (response.status === 401) $("token-row").hidden = false;
  return line || ("HTTP " + response.status + " " + response.statusText);
}
async function send(url, options) {
  try {
    return await fetch(url, options);
  } catch (err) {
    throw new Error("no answer from the server (" + err.message + ")");
  }
}

async function loadInfo() {
  setState("loading", "asking the server what it serves…");
  let response;
  try {
    response = await send("/?format=json", {headers: authHeaders(), cache: "no-store"});
  } catch (err) {
    setError(err.message);
    return false;
  }
  if (response.status === 503) {  // the model is loading: ask again
    $("info").textContent = (await errorOf(response)) + "; asking again in 2 s";
    setTimeout(loadInfo, 2000);
    return false;
  }
  if (!response.ok) {
    setError(await errorOf(response));
    return false;
  }
  info = await response.json();
  $("info").textContent = info.model_name + " (" + info.kind + " bundle, input " + info.input_size + "²), plan " + info.plan;
  $("seed-row").hidden = !info.takes_samples;
  $("channel-row").hidden = !info.uncertainty;
  $("refine-row").hidden = !info.refine_model;
  const channel = $("channel");
  if (!channel.options.length) {
    for (const name of info.uncertainty_channels) channel.add(new Option(name + " entropy", name));
  }
  $("cap-saliency").textContent = info.kind === "coop" ? "Ỹ: saliency after the energy's Langevin steps" : "saliency map";
  setError("");
  setState("ready", "");
  return true;
}

function show(id, blob, caption) {
  const img = $("out-" + id);
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(blob);
  if (caption !== undefined) $("cap-" + id).textContent = caption;
  $("fig-" + id).hidden = false;
}
function hideResults() {
  for (const id of ["saliency", "uncertainty", "refined"]) {
    $("fig-" + id).hidden = true;
    $("out-" + id).removeAttribute("data-query");
  }
  $("timing").textContent = "";
}

// One /predict call: the map as the server's PNG, shown as it came.
async function predict(photo, output) {
  const query = new URLSearchParams();
  if (output !== "saliency") query.set("output", output);
  const seed = $("seed").value.trim();
  if (info.takes_samples && seed !== "") query.set("seed", seed);
  const body = new FormData();
  if (photo) body.append("image", photo, photo.name);
  const url = "/predict" + (query.toString() ? "?" + query : "");
  const start = performance.now();
  const response = await send(url, {method: "POST", headers: authHeaders(), body: body});
  if (!response.ok) throw new Error(await errorOf(response));
  const blob = await response.blob();
  return {blob: blob, url: url, ms: performance.now() - start};
}

async function decoded(file, what) {
  try {
    return await createImageBitmap(file);
  } catch (err) {
    throw new Error("the browser cannot decode the " + what + " " + file.name + " as an image");
  }
}
function rgbaOf(bitmap, width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d", {willReadFrequently: true});
  context.drawImage(bitmap, 0, 0, width, height);
  return context.getImageData(0, 0, width, height).data;
}

// "Refine a map": IMAGE UINT8 [1,H,W,3] and MAP FP32 [1,1,H,W] (luma / 255) in the binary
// tensor extension; MAP comes back as binary FP32 and is drawn as an 8-bit grey image.
async function refine(photo, mapFile) {
  const image = await decoded(photo, "photograph");
  const map = await decoded(mapFile, "map");
  const width = image.width, height = image.height, n = width * height;
  const rgba = rgbaOf(image, width, height), mapRgba = rgbaOf(map, width, height);
  const rgb = new Uint8Array(n * 3);
  const probs = new DataView(new ArrayBuffer(n * 4));
  for (let i = 0; i < n; i++) {
    rgb[3 * i] = rgba[4 * i]; rgb[3 * i + 1] = rgba[4 * i + 1]; rgb[3 * i + 2] = rgba[4 * i + 2];
    const luma = (299 * mapRgba[4 * i] + 587 * mapRgba[4 * i + 1] + 114 * mapRgba[4 * i + 2]) / 1000;
    probs.setFloat32(4 * i, Math.min(1, luma / 255), true);
  }
  const head = new TextEncoder().encode(JSON.stringify({
    inputs: [
      {name: "IMAGE", datatype: "UINT8", shape: [1, height, width, 3], parameters: {binary_data_size: rgb.byteLength}},
      {name: "MAP", datatype: "FP32", shape: [1, 1, height, width], parameters: {binary_data_size: n * 4}},
    ],
    outputs: [{name: "MAP", parameters: {binary_data: true}}],
  }));
  const url = "/v2/models/" + info.refine_model + "/infer";
  const start = performance.now();
  const response = await send(url, {
    method: "POST",
    headers: authHeaders({"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": String(head.byteLength)}),
    body: new Blob([head, rgb, probs.buffer]),
  });
  if (!response.ok) throw new Error(await errorOf(response));
  const bytes = await response.arrayBuffer();
  const headLength = Number(response.headers.get("Inference-Header-Content-Length"));
  const output = JSON.parse(new TextDecoder().decode(bytes.slice(0, headLength))).outputs[0];
  const [outHeight, outWidth] = output.shape.slice(2);
  const values = new DataView(bytes, headLength);
  const canvas = document.createElement("canvas");
  canvas.width = outWidth;
  canvas.height = outHeight;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(outWidth, outHeight);
  for (let i = 0; i < outWidth * outHeight; i++) {
    const grey = Math.round(Math.min(1, Math.max(0, values.getFloat32(4 * i, true))) * 255);
    pixels.data[4 * i] = pixels.data[4 * i + 1] = pixels.data[4 * i + 2] = grey;
    pixels.data[4 * i + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  return {blob: blob, url: url, ms: performance.now() - start};
}

async function run() {
  const mine = ++generation;  // a newer run makes this one's answers stale
  if (!info && !(await loadInfo())) return;
  const photo = $("photo").files[0] || null;
  setError("");
  hideResults();
  if (photo) {
    show("photo", photo);
    $("cap-photo").textContent = photo.name;
  } else {
    $("fig-photo").hidden = true;
  }
  if (photo && photo.size > info.max_body_bytes) {
    setError(info.body_too_large);  // the server's 413 line, without uploading the file
    return;
  }
  const timings = [];
  try {
    const steps = [["saliency", "saliency", () => predict(photo, "saliency")]];
    if (info.uncertainty) {
      const channel = $("channel").value;
      steps.push(["uncertainty", channel + " entropy (1 bit = white)", () => predict(photo, channel)]);
    }
    const mapFile = info.refine_model ? $("refine-map").files[0] : null;
    if (mapFile) steps.push(["refined", "refined " + mapFile.name, () => refine(photo, mapFile)]);
    for (const [id, label, call] of steps) {
      setState("busy", label + "…");
      const answer = await call();
      if (mine !== generation) return;
      show(id, answer.blob, id === "saliency" ? undefined : label);
      $("out-" + id).dataset.query = answer.url;
      timings.push(label.split(" ")[0] + " " + Math.round(answer.ms) + " ms");
      $("timing").textContent = "round trip per request (upload, decode, model, encode): " + timings.join(" · ");
    }
  } catch (err) {
    if (mine === generation) setError(err.message);
    return;
  }
  setState("done", "");
}

const drop = $("drop");
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.remove("over"); });
}
drop.addEventListener("drop", (event) => {
  if (event.dataTransfer.files.length) {
    $("photo").files = event.dataTransfer.files;
    run();
  }
});
// A file dropped beside the zone must not make the browser leave the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());
$("photo").addEventListener("change", run);
for (const id of ["refine-map", "channel", "seed"]) {
  $(id).addEventListener("change", () => { if ($("photo").files.length) run(); });
}
$("token").addEventListener("change", () => { info = null; loadInfo(); });
$("form").addEventListener("submit", (event) => { event.preventDefault(); run(); });
loadInfo();
"""

_BODY = """
<h1>salkit: try a photograph</h1>
<p id="info">connecting…</p>
<form id="form">
<div class="row" id="token-row" hidden>
 <label>token <input id="token" type="password" autocomplete="off"></label>
 <span>this server wants the bearer token it was started with (serve --token-file)</span>
</div>
<label class="drop" id="drop">Choose or drop a photograph<br><input id="photo" type="file" accept="image/*"></label>
<div class="row">
 <label id="refine-row" hidden>refine a map (optional) <input id="refine-map" type="file" accept="image/*"></label>
 <label id="seed-row" hidden>seed <input id="seed" type="number" min="0" step="1" value="0"></label>
 <label id="channel-row" hidden>uncertainty <select id="channel"></select></label>
 <button id="run" type="submit">predict</button>
</div>
</form>
<p id="error" role="alert"></p>
<p id="status" role="status"></p>
<div class="maps">
 <figure id="fig-photo" hidden><img id="out-photo" alt="photograph"><figcaption id="cap-photo"></figcaption></figure>
 <figure id="fig-saliency" hidden><img id="out-saliency" alt="saliency map"><figcaption id="cap-saliency">saliency map</figcaption></figure>
 <figure id="fig-uncertainty" hidden><img id="out-uncertainty" alt="uncertainty map"><figcaption id="cap-uncertainty"></figcaption></figure>
 <figure id="fig-refined" hidden><img id="out-refined" alt="refined map"><figcaption id="cap-refined"></figcaption></figure>
</div>
<p id="timing"></p>
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE_HTML = (
    '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    '<link rel="icon" href="data:,">\n'  # no favicon request
    "<title>salkit: try a photograph</title>\n"
    f"<style>{_STYLE}</style>\n</head>\n<body data-state=\"loading\">{_BODY}<script>{_SCRIPT}</script>\n</body>\n</html>\n"
)
# Only this page's own script and style run, and it talks to this server alone.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_csp_hash(_SCRIPT)}; style-src {_csp_hash(_STYLE)}; "
    "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def page_info(predictor: Any, served: list[str], max_body_bytes: int) -> dict[str, Any]:
    """What the page shows and needs (``GET /?format=json``) for the loaded ``predictor`` serving
    the models named ``served`` (entry model first)."""
    manifest = predictor.manifest
    kind = get_kind(manifest.model_kind)
    return {
        "model_name": manifest.model_name,
        "kind": manifest.model_kind,
        "plan": str(getattr(predictor, "plan", getattr(predictor, "backend_name", "unknown"))),  # "backend:precision"
        "input_size": manifest.input_size,
        "models": served,  # the first one takes /predict
        "takes_samples": kind.takes_samples,
        "uncertainty": kind.uncertainty,
        "uncertainty_channels": list(UNCERTAINTY_CHANNELS) if kind.uncertainty else [],
        "refine_model": "refine" if "refine" in served else None,
        "max_body_bytes": max_body_bytes,
        "body_too_large": str(BodyTooLarge(max_body_bytes)),
    }


async def page_route(request: Request, data: Callable[[], dict[str, Any]]) -> Response:
    """``GET /``: the page; ``GET /?format=json``: ``data()`` (which raises 503 while the model loads)."""
    fmt = request.query_params.get("format")
    if fmt is None:
        return HTMLResponse(PAGE_HTML, headers=_HEADERS)
    if fmt != "json":
        raise ProtocolError(f"format={fmt!r} is not supported here (GET / for the page, GET /?format=json for its data)")
    return JSONResponse(data(), headers={"Cache-Control": "no-store"})
