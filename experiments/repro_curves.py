"""The reproduction harness's curves picture: precision–recall and score-vs-threshold curves of
several models' maps on the test set, one row per model.

The curves and each row's drawing are ``sal-runtime eval``'s own (``evaluate_arrays`` and
``render_curves_png``), so the picture shows exactly what ``sal-runtime eval --plot`` would draw
for each model's maps; this module only computes them per model and stacks the rows.
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np

# Width of the stacked picture: the eval plot is 1000 px wide; 760 keeps its labels legible while
# the PNG stays small enough for the repository's docs.
WIDTH = 760


def curve_results(maps: Mapping[str, np.ndarray], masks: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per label, ``evaluate_arrays`` of its probability maps (B,S,S) against boolean masks (B,S,S)
    (scalars and the 256-threshold ``curves``)."""
    from salkit.base.metrics import evaluate_arrays

    return {label: evaluate_arrays([m.astype(np.float32) for m in values], list(masks)) for label, values in maps.items()}


def curves_png(results: Mapping[str, Mapping[str, Any]], caption: str = "") -> bytes:
    """One ``render_curves_png`` row per label, stacked top to bottom, downscaled to :data:`WIDTH`
    and stored with a 256-colour palette (line plots lose nothing visible; the file shrinks ~3×)."""
    from PIL import Image

    from salkit.base.metrics import render_curves_png

    rows = []
    for label, result in results.items():
        title = (f"{label}{' — ' + caption if caption else ''}: {result['n_images']} images, "
                 f"MAE {result['mae']:.4f}, S {result['s_measure']:.3f}, max F {result['max_f']:.3f}")
        with Image.open(io.BytesIO(render_curves_png(dict(result), title=title))) as im:
            rows.append(im.convert("RGB"))
    if not rows:
        raise ValueError("no maps to draw")
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height
    if width > WIDTH:
        sheet = sheet.resize((WIDTH, round(sheet.height * WIDTH / width)), Image.LANCZOS)
    buffer = io.BytesIO()
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
