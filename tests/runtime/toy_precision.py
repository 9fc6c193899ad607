"""Lower-precision stand-ins for the runtime's plan tests: int8 QDQ variants and manifest records.

``with_precision_records`` copies a toy bundle and adds what the precision export writes
(``variants``, ``precision_gate``, ``precision_choice``): int8 graphs made by ONNX Runtime's
static QDQ quantiser on a few random calibration batches, or any replacement file a test wants
(e.g. a graph that is fast but wrong). The records go both at the manifest's top level (where
the export writes them) and under ``extra`` (where a manifest reader without those fields keeps
them), so the runtime reads them either way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from salkit.runtime.bundle import MANIFEST_NAME, sha256_file


def quantize_int8(source: Path, target: Path, calibration: list[dict[str, np.ndarray]]) -> None:
    """A QDQ int8 copy of an ONNX graph (uint8 activations, per-channel int8 weights)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)


def with_precision_records(
    bundle: Path,
    out: Path,
    *,
    variant_files: dict[str, dict[str, Path]] | None = None,
    gate: dict[str, dict[str, Any]] | None = None,
    choice: str | None = None,
) -> Path:
    """Copy ``bundle`` to ``out`` with variant files {precision: {graph: file}} and the records."""
    shutil.copytree(bundle, out)
    variants: dict[str, dict[str, dict[str, str]]] = {}
    for precision, graphs in (variant_files or {}).items():
        for graph, file in graphs.items():
            name = f"{graph}.{precision}.onnx"
            shutil.copyfile(file, out / name)
            variants.setdefault(precision, {})[graph] = {"file": name, "sha256": sha256_file(out / name)}
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    records = {"variants": variants, "precision_gate": gate or {}, "precision_choice": {"plan": choice} if choice else {}}
    manifest.update(records)
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out


def passed(**numbers: float) -> dict[str, Any]:
    return {"passed": True, "reason": "", **numbers}


def rejected(reason: str = "saliency max |Δ| 0.31 > 0.05 (graph latent_decoder)") -> dict[str, Any]:
    return {"passed": False, "reason": reason}
