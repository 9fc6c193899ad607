"""Real photographs for calibration and for the precision gate, taken from the training split only.

``--calib DIR`` is a folder of images, or a dataset root with ``img/`` (or ``images/``,
``Imgs/``). A root with ``train.txt`` (one image id a line, e.g. ``../shared/data/pascal-s``) is
split-aware: only ``img/<id>.*`` of the listed ids are read, in the file's order, so nothing of
``test.txt`` is ever calibrated or gated on. The first images calibrate int8; the gate judges on
the ones after them (a held set), reusing calibration images only when the folder is too small.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from salkit.base.errors import SalkitError

SPLIT_FILE = "train.txt"
IMAGE_FOLDERS = ("img", "images", "Imgs")


def _image_folder(root: Path) -> Path:
    for sub in IMAGE_FOLDERS:
        if (root / sub).is_dir():
            return root / sub
    return root


def calibration_files(directory: str | Path) -> tuple[list[Path], str]:
    """(image files in order, a description of where they came from)."""
    from salkit.base.images import is_image_path, list_images

    root = Path(directory)
    if not root.is_dir():
        raise SalkitError(f"calibration folder {root} does not exist or is not a directory")
    folder = _image_folder(root)
    split = root / SPLIT_FILE
    if not split.is_file():
        return list_images(folder, what="calibration image folder"), f"{folder}"
    ids = [line.strip() for line in split.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if is_image_path(path) and not path.name.startswith("."):
            by_stem.setdefault(path.stem, path)
    files = [by_stem[i] for i in ids if i in by_stem]
    if not files:
        raise SalkitError(f"calibration folder {root}: none of the {len(ids)} ids in {SPLIT_FILE} has an image in {folder}")
    return files, f"{folder} ({SPLIT_FILE}: {len(files)} of {len(ids)} ids)"


@dataclasses.dataclass
class CalibrationImages:
    calibration: np.ndarray  # (N, 3, S, S) float32, normalised like the runtime does
    held: np.ndarray  # (M, 3, S, S): the gate's images (after the calibration ones)
    held_overlaps_calibration: bool
    source: str
    unreadable: list[str]  # "file: reason" of images that could not be decoded (skipped)

    def record(self) -> dict:
        return {"source": self.source, "calibration_images": int(self.calibration.shape[0]),
                "gate_images": int(self.held.shape[0]), "gate_overlaps_calibration": self.held_overlaps_calibration,
                "unreadable": self.unreadable[:5]}


def load_calibration(directory: str | Path, size: int, mean: Sequence[float], std: Sequence[float],
                     calibration: int, held: int) -> CalibrationImages:
    """Decode up to ``calibration + held`` readable images; unreadable ones are skipped and listed,
    a folder with none readable is refused."""
    from salkit.base.images import decode_image, preprocess

    files, source = calibration_files(directory)
    decoded, unreadable = [], []
    for path in files:
        if len(decoded) == calibration + held:
            break
        try:
            decoded.append(decode_image(path))
        except (SalkitError, OSError, ValueError) as err:
            unreadable.append(f"{path.name}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    if not decoded:
        example = f" (e.g. {unreadable[0]})" if unreadable else ""
        raise SalkitError(f"calibration folder {directory} has no readable images: {len(unreadable)} failed to decode{example}")
    x = np.ascontiguousarray(preprocess(decoded, size, mean, std))  # (n, 3, S, S)
    n_cal = min(calibration, len(decoded))
    rest = x[n_cal:]
    overlaps = rest.shape[0] == 0
    held_x = x[: min(held, n_cal)] if overlaps else rest[:held]
    return CalibrationImages(x[:n_cal], np.ascontiguousarray(held_x), overlaps, source, unreadable)
