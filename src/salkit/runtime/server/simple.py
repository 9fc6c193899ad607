"""``POST /predict``: one image file in, one map out, for curl users.

The image comes as the raw request body (``curl --data-binary @img.jpg``) or as a multipart
upload (``curl -F image=@img.jpg``; the field ``image``, else the first file). Query options:
``format=png`` (default: an 8-bit grayscale PNG at the image's size) or ``format=json`` (all maps
as nested lists plus the model's statistics); ``output=saliency|predictive|aleatoric|epistemic``
picks the PNG's map (uncertainty PNGs show entropy in bits: 255 = 1 bit); ``samples``, ``steps``,
``noise``, ``seed`` as for the v2 ``saliency`` model.
"""

from __future__ import annotations

import asyncio
import io
import math
from typing import Any

import numpy as np
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from salkit.base import images
from salkit.runtime.server.models import UNCERTAINTY_CHANNELS, ServedModel
from salkit.runtime.server.protocol import InferRequest, ProtocolError
from salkit.runtime.server.stats import ServerStats

_FORMATS = ("png", "json")
_OUTPUTS = ("saliency", *UNCERTAINTY_CHANNELS)


def _query_params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in ("samples", "steps", "seed"):
        raw = request.query_params.get(name)
        if raw is not None:
            try:
                params[name] = int(raw)
            except ValueError:
                raise ProtocolError(f"query parameter {name}={raw!r} is not an integer") from None
    raw_noise = request.query_params.get("noise")
    if raw_noise is not None:
        if raw_noise.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ProtocolError(f"query parameter noise={raw_noise!r} must be true or false")
        params["noise"] = raw_noise.lower() in ("1", "true", "yes")
    return params


async def _image_bytes(request: Request) -> tuple[bytes, str]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=4, max_fields=16) as form:
            upload = form.get("image")
            if not isinstance(upload, UploadFile):
                upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
            if upload is None:
                raise ProtocolError("multipart body has no file: send the image as field 'image' (curl -F image=@photo.jpg)")
            return await upload.read(), upload.filename or "upload"
    return await request.body(), "request body"


def _png(map01: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(images.to_uint8_map(map01)).save(buffer, format="PNG")
    return buffer.getvalue()


async def predict_route(request: Request, models: dict[str, ServedModel], stats: ServerStats) -> Response:
    fmt = request.query_params.get("format", "png")
    if fmt not in _FORMATS:
        raise ProtocolError(f"format={fmt!r} is not supported (use {' or '.join(_FORMATS)})")
    output = request.query_params.get("output", "saliency")
    if output not in _OUTPUTS:
        raise ProtocolError(f"output={output!r} is not one of {', '.join(_OUTPUTS)}")
    params = _query_params(request)
    model = next(iter(models.values()))  # the kind's entry model (models_for puts it first)
    data, label = await _image_bytes(request)
    if not data:
        raise ProtocolError("empty body: send an image file (raw body, or multipart field 'image')")
    names = [t.name for t in model.outputs]
    if output != "saliency" and "UNCERTAINTY" not in names:
        raise ProtocolError(f"output={output!r} needs a coop bundle; the {model.name!r} model has no uncertainty")
    wanted = names if fmt == "json" or output != "saliency" else ["SALIENCY"]
    with stats.trace(model.name) as trace:  # the model's statistics count /predict calls too
        rgb = await asyncio.to_thread(images.decode_image, data, name=label)
        infer_request = InferRequest(None, params, {"IMAGE": rgb[None]}, {"IMAGE": "UINT8"}, None, False)  # (1, H, W, 3)
        prepared = await asyncio.to_thread(model.prepare, infer_request)
        trace.input_done()
        result = await model.infer(infer_request, prepared, wanted, trace)
        return await _answer(result, model, fmt, output)


async def _answer(result: dict[str, np.ndarray], model: ServedModel, fmt: str, output: str) -> Response:
    saliency = result["SALIENCY"][0, 0]
    if fmt == "png":
        if output == "saliency":
            chosen = saliency
        else:
            bits = result["UNCERTAINTY"][0, UNCERTAINTY_CHANNELS.index(output)] / math.log(2)
            chosen = np.clip(bits, 0.0, 1.0)
        return Response(await asyncio.to_thread(_png, chosen), media_type="image/png")
    body: dict[str, Any] = {"model": model.name, "height": int(saliency.shape[0]), "width": int(saliency.shape[1])}
    body["saliency"] = saliency.tolist()
    if "UNCERTAINTY" in result:
        body["uncertainty"] = {k: result["UNCERTAINTY"][0, i].tolist() for i, k in enumerate(UNCERTAINTY_CHANNELS)}
    for stat in ("ITERATIONS", "RESIDUAL"):
        if stat in result:
            body[stat.lower()] = float(result[stat][0])
    return JSONResponse(body)
