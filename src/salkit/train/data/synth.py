"""Procedural salient-object scenes in the DUTS layout, with S-DUTS-style scribbles.

Each scene is a textured, cluttered background with low-contrast distractor shapes, and one to
three salient objects that stand out by colour, by brightness contrast or by texture. Object
shapes cover convex (ellipse, polygon), concave (star, blob, crescent), thin parts (a body
with limbs) and holes (ring, frame). Scene ``i`` of seed ``k`` depends only on ``(k, i)``, so
a larger ``n`` extends a dataset without changing its first images.

Written with numpy and PIL only: no torch, so generation is cheap and runs anywhere.

Files: ``img/<stem>.jpg`` (RGB), ``gt/<stem>.png`` (0/255), ``scribble/<stem>.png`` with the
S-DUTS convention 1 = foreground, 2 = background, 0 = unknown; every foreground stroke lies
inside the ground-truth foreground and every background stroke outside it.
"""

from __future__ import annotations

import colorsys
import functools
import io
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from salkit.base.atomic import atomic_directory
from salkit.base.errors import SalkitError
from salkit.train.data.strokes import background_region, part_stroke
from salkit.train.data.strokes import strokes as _strokes

SHAPES = ("ellipse", "polygon", "star", "blob", "crescent", "limbs", "ring", "frame")
CUES = ("colour", "contrast", "texture")
SCRIBBLE_UNKNOWN, SCRIBBLE_FG, SCRIBBLE_BG = 0, 1, 2
FORMAT_VERSION = 1


@dataclass
class Scene:
    image: np.ndarray  # (S, S, 3) uint8 RGB
    mask: np.ndarray  # (S, S) bool, salient foreground
    scribble: np.ndarray  # (S, S) uint8 in {0, 1, 2}
    objects: list[dict[str, str]] = field(default_factory=list)  # shape and cue of each salient object
    distractors: int = 0


# ---------------------------------------------------------------- shapes (masks)


def _radial_polygon(cx: float, cy: float, radii: np.ndarray, angle0: float) -> list[tuple[float, float]]:
    theta = angle0 + np.linspace(0.0, 2 * math.pi, len(radii), endpoint=False)
    return list(zip((cx + radii * np.cos(theta)).tolist(), (cy + radii * np.sin(theta)).tolist(), strict=True))


@functools.lru_cache(maxsize=64)
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


def _ellipse_points(cx: float, cy: float, a: float, b: float, rot: float) -> list[tuple[float, float]]:
    cos_t, sin_t = _unit_circle(int(np.clip(2 * max(a, b), 12, 48)))  # fewer vertices for small shapes
    x, y = a * cos_t, b * sin_t
    c, s = math.cos(rot), math.sin(rot)
    return list(zip((cx + c * x - s * y).tolist(), (cy + s * x + c * y).tolist(), strict=True))


def draw_shape(kind: str, rng: np.random.Generator, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """A boolean (S, S) mask of one shape of ``kind`` centred at (cx, cy) with radius about r."""
    canvas = Image.new("L", (size, size), 0)
    paint_shape(ImageDraw.Draw(canvas), kind, rng, size, cx, cy, r, 255)
    return np.asarray(canvas) > 127


def paint_shape(
    draw: ImageDraw.ImageDraw, kind: str, rng: np.random.Generator, size: int, cx: float, cy: float, r: float, fill: int
) -> None:
    """Paint one shape with ``fill`` on an "L" canvas (holes are painted 0)."""
    rot = rng.uniform(0, math.pi)
    if kind == "ellipse":
        draw.polygon(_ellipse_points(cx, cy, r, r * rng.uniform(0.5, 1.0), rot), fill=fill)
    elif kind == "polygon":
        k = int(rng.integers(3, 7))
        draw.polygon(_radial_polygon(cx, cy, r * rng.uniform(0.85, 1.0, k), rot), fill=fill)
    elif kind == "star":
        k = int(rng.integers(4, 8))
        radii = np.empty(2 * k)
        radii[0::2], radii[1::2] = r, r * rng.uniform(0.35, 0.55)
        draw.polygon(_radial_polygon(cx, cy, radii, rot), fill=fill)
    elif kind == "blob":
        theta = np.linspace(0.0, 2 * math.pi, 64, endpoint=False)
        radii = np.ones_like(theta)
        for harmonic in (2, 3, 4):
            radii += rng.uniform(0.1, 0.25) * np.cos(harmonic * theta + rng.uniform(0, 2 * math.pi))
        draw.polygon(_radial_polygon(cx, cy, r * np.clip(radii, 0.25, None) / radii.max(), rot), fill=fill)
    elif kind == "crescent":
        draw.polygon(_ellipse_points(cx, cy, r, r, 0.0), fill=fill)
        shift = r * rng.uniform(0.45, 0.7)
        draw.polygon(_ellipse_points(cx + shift * math.cos(rot), cy + shift * math.sin(rot), r * 0.85, r * 0.85, 0.0), fill=0)
    elif kind == "limbs":
        body = r * rng.uniform(0.4, 0.55)
        draw.polygon(_ellipse_points(cx, cy, body, body * rng.uniform(0.6, 1.0), rot), fill=fill)
        width = max(2, int(round(size / 48)))
        for angle in rot + np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(2, 5)))):
            end = (cx + r * math.cos(angle), cy + r * math.sin(angle))
            draw.line([(cx, cy), end], fill=fill, width=width)
    elif kind == "ring":
        b = r * rng.uniform(0.7, 1.0)
        draw.polygon(_ellipse_points(cx, cy, r, b, rot), fill=fill)
        inner = rng.uniform(0.4, 0.6)
        draw.polygon(_ellipse_points(cx, cy, r * inner, b * inner, rot), fill=0)
    elif kind == "frame":
        h = r * rng.uniform(0.6, 1.0)
        draw.rectangle([cx - r, cy - h, cx + r, cy + h], fill=fill)
        t = max(2.0, r * rng.uniform(0.25, 0.4))
        if h > t and r > t:  # a frame too small for a hole stays a plain rectangle
            draw.rectangle([cx - r + t, cy - h + t, cx + r - t, cy + h - t], fill=0)
    else:
        raise ValueError(f"unknown shape {kind!r}")


# ---------------------------------------------------------------- colours and textures


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))), dtype=np.float32) * 255


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(S, S, 3) float noise in [-1, 1], smooth over about S/cells pixels."""
    coarse = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    fine = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
    return np.asarray(fine, dtype=np.float32) / 127.5 - 1.0


def _pattern(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, period: float) -> np.ndarray:
    """Oriented stripes or a rotated checkerboard in [0, 1], evaluated at pixel coordinates (yy, xx)."""
    angle = rng.uniform(0, math.pi)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    if rng.random() < 0.5:
        return (0.5 + 0.5 * np.sin(2 * math.pi * u / period)).astype(np.float32)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)


def _background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """Textured background (S, S, 3) float, plus its base hue, saturation and value."""
    hue, sat, val = rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.75)
    far = _hsv(hue + rng.uniform(-0.08, 0.08), sat, val + rng.uniform(-0.15, 0.15))
    near = _hsv(hue, sat, val)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = ((xx * math.cos(angle) + yy * math.sin(angle)) / size + 1) / 2  # (S,S) in about [0, 1]
    bg = near + (far - near) * ramp[..., None]
    bg = bg + 18 * _smooth_noise(rng, size, int(rng.integers(4, 10))) + 8 * _smooth_noise(rng, size, size // 4)
    if rng.random() < 0.5:  # faint regular texture (wallpaper, fabric)
        bg = bg + rng.uniform(6, 14) * (_pattern(rng, yy, xx, rng.uniform(3, 10))[..., None] - 0.5)
    return bg, hue, sat, val


def _salient_colour(rng: np.random.Generator, cue: str, hue: float, sat: float, val: float) -> tuple[np.ndarray, np.ndarray]:
    """Two colours for a salient object (equal unless the cue is texture)."""
    if cue == "colour":
        c = _hsv(hue + rng.uniform(0.3, 0.7), rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
        return c, c
    if cue == "contrast":
        v = rng.uniform(0.85, 1.0) if val < 0.55 else rng.uniform(0.02, 0.15)
        c = _hsv(hue + rng.uniform(-0.1, 0.1), sat * rng.uniform(0.5, 1.2), v)
        return c, c
    light = _hsv(hue + rng.uniform(0.15, 0.85), rng.uniform(0.3, 0.8), rng.uniform(0.8, 1.0))
    dark = _hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.0, 0.2))
    return light, dark


# ---------------------------------------------------------------- scribbles


def make_scribble(rng: np.random.Generator, regions: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """S-DUTS scribble: a stroke inside each visible object region, a few in the background."""
    size = mask.shape[0]
    width = max(1, int(round(size / 96)))
    scribble = np.zeros(mask.shape, dtype=np.uint8)
    background = background_region(mask, size)
    bg = _strokes(rng, background, int(rng.integers(2, 5)), size * rng.uniform(0.4, 0.8), width)
    scribble[bg] = SCRIBBLE_BG
    for region in regions:
        scribble[part_stroke(rng, region, width)] = SCRIBBLE_FG
    return scribble


# ---------------------------------------------------------------- scenes


_SOFTEN = ImageFilter.Kernel((3, 3), [1, 2, 1, 2, 4, 2, 1, 2, 1], 16)  # binomial 3×3 blur


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)  # (S,S) pixel coordinates each
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def render_scene(rng: np.random.Generator, size: int) -> Scene:
    """One scene of ``size``×``size`` pixels drawn from ``rng``."""
    yy, xx = _grid(size)
    image, hue, sat, val = _background(rng, size, yy, xx)
    base_colour = image.reshape(-1, 3).mean(axis=0)  # (S*S,3) → (3,)

    # Clutter and distractors share the background's palette: low contrast, not salient.
    # All of them go on one label canvas, then one pass colours it.
    labels = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(labels)
    n_clutter, n_distractors = int(rng.integers(8, 20)), int(rng.integers(1, 4))
    for i in range(n_clutter):
        paint_shape(draw, _pick(rng, SHAPES), rng, size, rng.uniform(0, size), rng.uniform(0, size), size * rng.uniform(0.02, 0.06), i + 1)
    for i in range(n_distractors):
        centre = rng.uniform(0.1, 0.9, 2) * size
        paint_shape(draw, _pick(rng, SHAPES), rng, size, centre[0], centre[1], size * rng.uniform(0.08, 0.2), n_clutter + i + 1)
    label = np.asarray(labels)  # (S,S) 0 = background, 1.. = clutter, then distractors
    tints = np.concatenate([np.zeros((1, 3)), base_colour + rng.normal(0, 24, (n_clutter, 3)), base_colour + rng.normal(0, 18, (n_distractors, 3))])
    opacity = np.concatenate([[0.0], np.full(n_clutter, 0.6), np.full(n_distractors, 0.9)]).astype(np.float32)
    painted = label > 0
    alpha = opacity[label[painted]][:, None]  # (P,1) over the painted pixels only
    texture = 10 * _smooth_noise(rng, size, 8)[painted]  # (P,3)
    image[painted] = image[painted] * (1 - alpha) + (tints.astype(np.float32)[label[painted]] + texture) * alpha

    n_objects = int(rng.integers(1, 4))
    radii = np.sort(size * rng.uniform(0.1, 0.3 if n_objects > 1 else 0.38, n_objects))[::-1]
    mask = np.zeros((size, size), dtype=bool)
    regions: list[np.ndarray] = []
    objects: list[dict[str, str]] = []
    for r in radii:  # large first, so smaller objects stay visible on top
        kind, cue = _pick(rng, SHAPES), _pick(rng, CUES)
        margin = min(r, 0.35 * size)
        shape = draw_shape(kind, rng, size, rng.uniform(margin, size - margin), rng.uniform(margin, size - margin), float(r))
        if not shape.any():
            continue
        light, dark = _salient_colour(rng, cue, hue, sat, val)
        ys, xs = yy[shape], xx[shape]  # (P,) coordinates of the shape's pixels
        weight = _pattern(rng, ys, xs, rng.uniform(2.5, 6)) if cue == "texture" else np.ones_like(ys)
        angle = rng.uniform(0, 2 * math.pi)
        shading = 1 + 0.12 * ((xs * math.cos(angle) + ys * math.sin(angle)) / size - 0.5)  # soft lighting
        image[shape] = (light * weight[:, None] + dark * (1 - weight[:, None])) * shading[:, None]
        regions = [region & ~shape for region in regions]
        regions.append(shape)
        mask |= shape
        objects.append({"shape": kind, "cue": cue})

    # Sensor noise: uniform with std 3 grey levels, from raw bytes (several times cheaper than normals).
    noise = np.frombuffer(rng.bytes(image.size), dtype=np.uint8).reshape(image.shape)
    image += (noise.astype(np.float32) - 127.5) * np.float32(3 * math.sqrt(3) / 127.5)
    pixels = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    pixels = np.asarray(pixels.filter(_SOFTEN))  # soften the hard rendered edges
    scribble = make_scribble(rng, [r for r in regions if r.any()], mask)
    return Scene(image=pixels, mask=mask, scribble=scribble, objects=objects, distractors=n_distractors)


def make_scene(seed: int, index: int, size: int) -> Scene:
    """Scene ``index`` of the dataset with ``seed``: depends on (seed, index, size) only."""
    return render_scene(np.random.default_rng([seed, index]), size)


def scene_stem(index: int) -> str:
    return f"synth_{index:05d}"


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _check_args(n: int, size: int) -> None:
    if n < 1:
        raise SalkitError(f"--n must be at least 1, got {n}")
    if size < 32:
        raise SalkitError(f"--size must be at least 32 pixels, got {size}")
    if size > 4096:
        raise SalkitError(f"--size must be at most 4096 pixels, got {size}")


def write_dataset(out: str | os.PathLike[str], n: int, size: int, seed: int, *, force: bool = False) -> dict[str, float]:
    """Write ``n`` scenes to ``out`` (img/, gt/, scribble/, synth.json) atomically; returns timing stats."""
    _check_args(n, size)
    started = time.perf_counter()
    with atomic_directory(out, force=force) as tmp:
        for sub in ("img", "gt", "scribble"):
            (tmp / sub).mkdir()
        for index in range(n):
            scene = make_scene(seed, index, size)
            stem = scene_stem(index)
            Image.fromarray(scene.image).save(tmp / "img" / f"{stem}.jpg", format="JPEG", quality=92)
            (tmp / "gt" / f"{stem}.png").write_bytes(_png_bytes(scene.mask.astype(np.uint8) * 255))
            (tmp / "scribble" / f"{stem}.png").write_bytes(_png_bytes(scene.scribble))
        info = {"generator": "salkit.train.data.synth", "format_version": FORMAT_VERSION, "n": n, "size": size, "seed": seed}
        (tmp / "synth.json").write_text(json.dumps(info, indent=2) + "\n")
    seconds = time.perf_counter() - started
    return {"images": float(n), "seconds": seconds, "images_per_second": n / seconds if seconds > 0 else math.inf}
