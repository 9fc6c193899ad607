"""One KServe v2 request through the unmodified ``tritonclient.http``, as a user of the server sends it.

    python scripts/demo_triton_request.py HOST:PORT IMAGE OUTDIR [--seed 0]

Sends IMAGE as ``UINT8 [1, H, W, 3]`` (the server resizes and normalises it) to the model the
server exposes (``saliency`` for a coop bundle, else ``qefpn``) and writes to OUTDIR:
``triton_saliency.npy`` (the float map, H×W), ``triton_saliency.png`` (8-bit) and
``triton.json`` (model, shape, min/mean/max). A seeded coop request is reproducible: it equals
``Predictor.predict([image], seed=SEED)``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.http as triton
from PIL import Image

from salkit.base.atomic import atomic_write_bytes, atomic_write_text
from salkit.base.images import decode_image, to_uint8_map

MODELS = ("saliency", "qefpn")  # what a coop or a QE-FPN bundle serves


def served_model(client: triton.InferenceServerClient, url: str) -> str:
    for name in MODELS:
        if client.is_model_ready(name):
            return name
    raise SystemExit(f"error: the server at {url} has none of the models {', '.join(MODELS)} ready")


def request_saliency(url: str, image: Path, seed: int) -> tuple[str, np.ndarray]:
    rgb = decode_image(image)
    client = triton.InferenceServerClient(url, connection_timeout=10, network_timeout=120)
    try:
        model = served_model(client, url)
        tensor = triton.InferInput("IMAGE", [1, *rgb.shape], "UINT8")
        tensor.set_data_from_numpy(rgb[None])  # binary tensor data extension: raw bytes after the JSON header
        wanted = [triton.InferRequestedOutput("SALIENCY")]  # leaving UNCERTAINTY out skips computing it
        # qefpn is deterministic and takes no seed; the coop model samples latents, so seed it.
        parameters = {"seed": seed} if model == "saliency" else {}
        result = client.infer(model, [tensor], outputs=wanted, parameters=parameters)
        return model, result.as_numpy("SALIENCY")[0, 0]
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="HOST:PORT of a running sal-runtime serve")
    parser.add_argument("image", type=Path)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    model, saliency = request_saliency(args.url, args.image, args.seed)
    args.outdir.mkdir(parents=True, exist_ok=True)
    npy = io.BytesIO()
    np.save(npy, saliency.astype(np.float32))
    atomic_write_bytes(args.outdir / "triton_saliency.npy", npy.getvalue())
    png = io.BytesIO()
    Image.fromarray(to_uint8_map(saliency)).save(png, format="PNG")
    atomic_write_bytes(args.outdir / "triton_saliency.png", png.getvalue())
    report = {
        "model": model,
        "seed": args.seed if model == "saliency" else None,
        "shape": list(saliency.shape),
        "min": float(saliency.min()),
        "mean": float(saliency.mean()),
        "max": float(saliency.max()),
    }
    atomic_write_text(args.outdir / "triton.json", json.dumps(report, indent=2) + "\n")
    print(f"tritonclient: {model} {saliency.shape[0]}×{saliency.shape[1]} mean {report['mean']:.4f} → {args.outdir}/triton_saliency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
