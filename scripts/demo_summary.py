"""The demo's closing table: each stage, where its output is, and one number read back from it.

    python scripts/demo_summary.py OUT

Every number is read from the file named on its row, so the table also checks that each stage
left its output where it says; a missing output makes the exit code 1.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image


def _images(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))


def _data(out: Path) -> str:
    return f"{_images(out / 'data/train/img')} train + {_images(out / 'data/test/img')} test images"


def _train(out: Path) -> str:
    with open(out / "coop/log.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    return f"step {last['step']}, ce {float(last['ce']):.4f} (log.csv)"


def _export(out: Path) -> str:
    manifest = json.loads((out / "bundle/manifest.json").read_text())
    graphs = manifest["graphs"]
    worst = max(g["validation"]["max_rel_err"] for g in graphs.values())
    return f"{manifest['model_kind']}, {len(graphs)} graphs, worst rel err {worst:.2g}"


def _predict(out: Path) -> str:
    maps = [p for p in (out / "pred").glob("*.png") if not p.stem.endswith("_uncertainty")]
    return f"{len(maps)} maps"


def _eval(out: Path) -> str:
    metrics = json.loads((out / "metrics.json").read_text())
    return f"MAE {metrics['mae']:.4f}, S {metrics['s_measure']:.4f}"


def _grid(out: Path) -> str:
    with Image.open(out / "grid.png") as img:
        return f"{img.width}×{img.height} px"


def _png_map(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def _served_triton(out: Path) -> str:
    report = json.loads((out / "serve/triton.json").read_text())
    h, w = report["shape"]
    return f"mean {report['mean']:.4f} ({h}×{w})"


def _served_curl(out: Path) -> str:
    curl = _png_map(out / "serve/curl_saliency.png")
    triton = _png_map(out / "serve/triton_saliency.png")
    differ = f"max |Δ| vs triton {np.abs(curl - triton).max() * 255:.0f}/255" if curl.shape == triton.shape else "shape differs from triton"
    return f"mean {curl.mean():.4f}, {differ}"


# (stage, output path relative to OUT, key number read from it)
ROWS: list[tuple[str, str, Callable[[Path], str]]] = [
    ("1/7 data", "data/", _data),
    ("2/7 train coop", "coop/last.pt", _train),
    ("3/7 export", "bundle/", _export),
    ("4/7 predict", "pred/", _predict),
    ("5/7 eval", "metrics.json", _eval),
    ("6/7 grid", "grid.png", _grid),
    ("7/7 serve: tritonclient", "serve/triton_saliency.png", _served_triton),
    ("7/7 serve: curl /predict", "serve/curl_saliency.png", _served_curl),
]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: demo_summary.py OUT", file=sys.stderr)
        return 2
    out = Path(argv[0])
    table = [("stage", "output", "key number")]
    missing = []
    for stage, relative, read in ROWS:
        path = out / relative
        try:
            if not path.exists():
                raise FileNotFoundError(path)
            number = read(out)
        except (OSError, KeyError, ValueError, IndexError) as err:
            missing.append(stage)
            number = f"MISSING ({type(err).__name__}: {err})"
        table.append((stage, str(path), number))
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    for i, (stage, path, number) in enumerate(table):
        print(f"{stage:<{widths[0]}}  {path:<{widths[1]}}  {number}")
        if i == 0:
            print(f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * 10}")
    if missing:
        print(f"error: no output for {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
