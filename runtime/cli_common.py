"""Shared pieces of ``sal-runtime predict`` and ``refine``: input lists, tolerant decoding, the grid.

Folder runs are tolerant by default: a file that cannot be decoded is reported on stderr and
skipped, the rest is processed, and the exit code is 1 if anything was skipped. With ``--strict``
every input is decoded before anything is written, so a bad file aborts the run (exit 2) with no
output written.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import click
import numpy as np
from PIL import Image

from salkit.kernels.atomic import atomic_path
from salkit.kernels.errors import SalkitError
from salkit.base.images import format_paths, is_image_path, list_images

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
ENTROPY_MAX = math.log(2.0)  # binary entropy in nats peaks at ln 2: uncertainty PNGs are scaled by it


def plan_options(command: F) -> F:
    """``--backend``, ``--precision`` and ``--threads``: the plan a command runs (salkit.runtime.plan)."""
    from salkit.runtime.backends import CHOICES
    from salkit.runtime.precision import PRECISION_CHOICES

    options = (
        click.option("--backend", type=click.Choice(CHOICES), default="auto", show_default=True,
                     help="Backend; auto measures the CPU backends the bundle allows (cached) and takes the fastest."),
        click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True,
                     help="fp32, bf16 (openvino, CPUs with bf16 units), int8 (the bundle's int8 graphs); auto: what the "
                          "bundle's precision gate passed and this CPU runs natively."),
        click.option("--threads", type=int, help="CPU threads for the backend (default: one per core)."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def input_files(path: str | Path, limit: int | None = None) -> list[Path]:
    """One image file or the images of a folder (sorted), at most ``limit`` of them."""
    source = Path(path)
    if not source.exists():
        raise SalkitError(f"input {source} does not exist")
    if source.is_dir():
        files = list_images(source, what="input folder")
    elif is_image_path(source):
        files = [source]
    else:
        raise SalkitError(f"input {source} is not an image file (suffix {source.suffix!r}) or a folder")
    if limit is not None:
        if limit < 1:
            raise SalkitError(f"--limit must be >= 1, got {limit}")
        files = files[:limit]
    stems: dict[str, Path] = {}
    for file in files:
        if file.stem in stems:
            raise SalkitError(f"{stems[file.stem].name} and {file.name} would both write {file.stem}.png; rename one")
        stems[file.stem] = file
    return files


def check_out_dir(out: str | Path) -> Path:
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise SalkitError(f"--out {folder} exists and is not a directory")
    return folder


class Failures:
    """Collects per-file failures; reports each on stderr as it happens."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.items: list[tuple[str, str]] = []

    def add(self, name: str, err: SalkitError) -> None:
        if self.strict:
            raise SalkitError(f"{err} (--strict: nothing was written)")
        self.items.append((name, str(err)))
        click.echo(f"skipped: {err}", err=True)

    def summary(self, done: int) -> int:
        """Print the closing line; the exit code (0 all fine, 1 something skipped)."""
        if self.items:
            click.echo(f"{done} done, {len(self.items)} skipped: {format_paths([n for n, _ in self.items])}", err=True)
            return 1
        return 0


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def progress(total: int, desc: str) -> "object":
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None, leave=False)


def _cell(array: np.ndarray, side: int) -> np.ndarray:
    """An RGB uint8 image or a [0, 1] map → a side×side RGB uint8 thumbnail."""
    if array.dtype != np.uint8:
        array = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.asarray(Image.fromarray(array).resize((side, side), Image.BILINEAR))


def write_grid(path: str | Path, rows: Iterable[Sequence[np.ndarray]], side: int = 128, gap: int = 4) -> None:
    """One row per image (image, saliency, uncertainty …), cells side×side, written atomically."""
    cells = [[_cell(a, side) for a in row] for row in rows]
    if not cells:
        raise SalkitError("nothing to put in the grid: no image was processed")
    columns = max(len(r) for r in cells)
    height, width = len(cells) * (side + gap) + gap, columns * (side + gap) + gap
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            top, left = gap + i * (side + gap), gap + j * (side + gap)
            canvas[top : top + side, left : left + side] = cell
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise SalkitError(f"--grid must name a .png file, got {target}")
    with atomic_path(target) as tmp:
        Image.fromarray(canvas).save(tmp, format="PNG")
