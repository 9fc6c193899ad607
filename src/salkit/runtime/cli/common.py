"""Shared pieces of ``sal-runtime predict``, ``refine`` and ``bench``: input options and lists, tolerant decoding, the grid.

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

from salkit.base.atomic import atomic_path
from salkit.base.errors import SalkitError
from salkit.base.images import format_paths, is_image_path, list_images

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
ENTROPY_MAX = math.log(2.0)  # binary entropy in nats peaks at ln 2: uncertainty PNGs are scaled by it


def plan_options(command: F) -> F:
    """``--backend``, ``--precision`` and ``--threads``: the plan a command runs (salkit.runtime.plan).

    The names are checked by the plan chooser, so a wrong one is the project's one-line error (exit 2)."""
    from salkit.runtime.backends import CHOICES
    from salkit.runtime.precision import PRECISION_CHOICES

    options = (
        click.option("--backend", metavar="|".join(CHOICES), default="auto", show_default=True,
                     help="Backend; auto measures the CPU backends the bundle allows (cached) and takes the fastest."),
        click.option("--precision", metavar="|".join(PRECISION_CHOICES), default="auto", show_default=True,
                     help="fp32, bf16 (openvino, CPUs with bf16 units), int8 (the bundle's int8 graphs); auto: what the "
                          "bundle's precision gate passed and this CPU runs natively (its per-graph plan first, where it records "
                          "one); mix: exactly that per-graph plan. A precision this CPU lacks runs at fp32 instead, and "
                          "the command says so."),
        click.option("--threads", type=int, help="CPU threads for the backend (default: one per core)."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def input_folder_options(help_text: str) -> Callable[[F], F]:
    """``--input`` (a folder of photographs, every command's name for them) and ``--images``, its former
    name in ``refine`` and ``bench``, kept hidden so that scripts using it keep working. Read both with
    :func:`input_folder`."""

    def decorate(command: F) -> F:
        command = click.option("--images", "images_alias", type=click.Path(), hidden=True)(command)
        return click.option("--input", "images_dir", type=click.Path(), help=help_text)(command)

    return decorate


def input_folder(images_dir: str | None, images_alias: str | None, *, required: bool) -> str | None:
    """--input, or the deprecated --images (a note on stderr); one of them, not both."""
    if images_dir is not None and images_alias is not None:
        raise click.UsageError("give --input only (--images is its deprecated name)")
    if images_alias is not None:
        command = click.get_current_context().info_name
        click.echo(f"note: {command} --images is deprecated; use --input", err=True)
        return images_alias
    if images_dir is None and required:
        raise click.UsageError("Missing option '--input'.")
    return images_dir


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
    """An RGB uint8 image or a [0, 1] map → a side×side RGB uint8 thumbnail, aspect kept (white margins)."""
    if array.dtype != np.uint8:
        array = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    height, width = array.shape[:2]
    scale = side / max(height, width)
    fitted = (max(1, round(width * scale)), max(1, round(height * scale)))
    thumb = np.asarray(Image.fromarray(np.ascontiguousarray(array)).resize(fitted, Image.BILINEAR))
    cell = np.full((side, side, 3), 255, dtype=np.uint8)
    top, left = (side - fitted[1]) // 2, (side - fitted[0]) // 2
    cell[top : top + fitted[1], left : left + fitted[0]] = thumb
    return cell


_FONT_FILES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf")


def _font(size: int) -> tuple[object, bool]:
    """A TrueType font with Ŷ/Ỹ when one is at hand (DejaVu: the system's or matplotlib's), else PIL's default."""
    from PIL import ImageFont

    candidates = list(_FONT_FILES)
    try:
        import importlib.util

        spec = importlib.util.find_spec("matplotlib")
        if spec is not None and spec.submodule_search_locations:
            candidates.append(str(Path(list(spec.submodule_search_locations)[0]) / "mpl-data/fonts/ttf/DejaVuSans.ttf"))
    except (ImportError, ValueError):
        pass
    for candidate in candidates:
        if Path(candidate).is_file():
            return ImageFont.truetype(candidate, size), True
    return ImageFont.load_default(size=size), False


def _ascii(label: str) -> str:
    return label.replace("Ŷ", "Y^").replace("Ỹ", "Y~")


def write_grid(
    path: str | Path, rows: Iterable[Sequence[np.ndarray]], side: int = 128, gap: int = 4,
    labels: Sequence[str] | None = None,
) -> None:
    """One row per image (image, saliency, uncertainty …), cells side×side, written atomically.

    ``labels`` name the columns in a header row above the cells (long labels wrap onto two lines).
    """
    from PIL import ImageDraw

    cells = [[_cell(a, side) for a in row] for row in rows]
    if not cells:
        raise SalkitError("nothing to put in the grid: no image was processed")
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise SalkitError(f"--grid must name a .png file, got {target}")
    columns = max(len(r) for r in cells)
    font_size = max(10, side // 10)
    header = 0 if not labels else 2 * font_size + 3 * gap
    height, width = len(cells) * (side + gap) + gap + header, columns * (side + gap) + gap
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            top, left = header + gap + i * (side + gap), gap + j * (side + gap)
            canvas[top : top + side, left : left + side] = cell
    picture = Image.fromarray(canvas)
    if labels:
        font, full = _font(font_size)
        draw = ImageDraw.Draw(picture)
        for j, label in enumerate(labels[:columns]):
            text = label if full else _ascii(label)
            lines = _wrap(draw, text, font, side)
            for k, line in enumerate(lines[:2]):
                line_width = draw.textlength(line, font=font)
                x = gap + j * (side + gap) + max(0, (side - line_width) / 2)
                draw.text((x, gap + k * (font_size + 2)), line, fill=(0, 0, 0), font=font)
    with atomic_path(target) as tmp:
        picture.save(tmp, format="PNG")


def _wrap(draw: object, text: str, font: object, width: int) -> list[str]:
    """Words → lines no wider than ``width`` pixels (a single long word stays whole)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]
