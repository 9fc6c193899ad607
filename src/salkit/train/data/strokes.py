"""Thin scribble strokes: smooth random walks drawn on the pixels a stroke may cover.

Shared by the procedural scenes (``synth``) and the scribbles derived from real masks
(``scribbles``). numpy and PIL only; every random draw comes from the ``rng`` passed in.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a (2r+1)² square; pixels beyond the border count as inside the mask."""
    if radius <= 0:
        return mask
    outside = np.pad(~mask, radius + 1).astype(np.int32)  # (S+2r+2, S+2r+2)
    table = outside.cumsum(0).cumsum(1)  # integral image: O(S²) whatever the radius
    k = 2 * radius + 1
    window = table[k:, k:] - table[:-k, k:] - table[k:, :-k] + table[:-k, :-k]  # (S+1, S+1) box sums
    return window[: mask.shape[0], : mask.shape[1]] == 0


def _walk(
    rng: np.random.Generator, allowed: np.ndarray, coords: tuple[np.ndarray, np.ndarray], length: float, step: float
) -> list[tuple[float, float]]:
    """A smooth random walk of about ``length`` pixels that stays on ``allowed`` pixels (``coords`` = its nonzero())."""
    ys, xs = coords
    if len(ys) == 0:
        return []
    start = int(rng.integers(len(ys)))
    x, y = float(xs[start]), float(ys[start])
    heading = rng.uniform(0, 2 * math.pi)
    points = [(x, y)]
    h, w = allowed.shape
    steps, attempts = max(1, int(length / step)), 6
    wobble = rng.normal(0, 0.35, (steps, attempts)).tolist()  # drawn up front: one RNG call, not one per step
    turns = (rng.choice((-1.0, 1.0), (steps, attempts)) * rng.uniform(0.8, 2.2, (steps, attempts))).tolist()
    for i in range(steps):
        for j in range(attempts):
            heading_try = heading + wobble[i][j]
            nx, ny = x + step * math.cos(heading_try), y + step * math.sin(heading_try)
            if 0 <= nx < w and 0 <= ny < h and allowed[int(ny), int(nx)]:
                break
            heading += turns[i][j]  # turn away from the edge
        else:
            break
        heading, x, y = heading_try, nx, ny
        points.append((x, y))
    return points


def strokes(rng: np.random.Generator, allowed: np.ndarray, count: int, length: float, width: int) -> np.ndarray:
    """Thin strokes drawn on ``allowed`` (clipped to it, so they never leave it)."""
    canvas = Image.new("L", allowed.shape[::-1], 0)
    draw = ImageDraw.Draw(canvas)
    coords = np.nonzero(allowed)
    for _ in range(count):
        points = _walk(rng, allowed, coords, length, step=max(2.0, width))
        if len(points) == 1:
            draw.point(points, fill=255)
        elif points:
            draw.line(points, fill=255, width=width, joint="curve")
    return (np.asarray(canvas) > 127) & allowed


def background_region(mask: np.ndarray, side: int) -> np.ndarray:
    """Where background strokes may go: the background eroded by max(2, side // 24) pixels, so
    strokes keep off object borders as annotators do (eroded by 1 when that leaves nothing)."""
    background = erode(~mask, max(2, side // 24))
    return background if background.any() else erode(~mask, 1)


def part_stroke(rng: np.random.Generator, part: np.ndarray, width: int) -> np.ndarray:
    """One stroke of √area·U(1, 2) pixels on an object part eroded by ``width`` + 1 (or by 1, or
    not at all, when the erosion leaves nothing: thin parts)."""
    allowed = part
    for radius in (width + 1, 1):
        eroded = erode(part, radius)
        if eroded.any():
            allowed = eroded
            break
    return strokes(rng, allowed, 1, math.sqrt(part.sum()) * rng.uniform(1.0, 2.0), width)
