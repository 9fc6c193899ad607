"""Run logs: a CSV of per-step scalars (append-only, trimmed on resume) and PNG image grids."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from salkit.base.atomic import atomic_path, atomic_write_text


class CsvLog:
    """One row per logged step; columns fixed by the first row written (new keys are dropped)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] | None = None
        if path.exists():
            with open(path, newline="") as handle:
                header = next(csv.reader(handle), None)
            self.columns = header or None

    def trim_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (they belong to a run that was killed and resumed)."""
        if not self.path.exists():
            return
        with open(self.path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if self.columns is None:
            return
        kept = [r for r in rows if r.get("step", "").isdigit() and int(r["step"]) <= step]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(self.path, out.getvalue())

    def write(self, row: dict[str, float | int | str]) -> None:
        new = self.columns is None
        if new:
            self.columns = list(row)
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def save_grid(panels: list[torch.Tensor], path: Path, max_rows: int = 4) -> None:
    """Panels (B,C,H,W) in [0,1] (C = 1 or 3) side by side, one row per sample, as one PNG."""
    from PIL import Image

    rows = []
    for i in range(min(max_rows, panels[0].shape[0])):
        cells = [p[i].detach().float().cpu().clamp(0, 1).expand(3, -1, -1) for p in panels]  # (3,H,W) each
        rows.append(torch.cat(cells, dim=2))  # (3, H, W·panels)
    grid = torch.cat(rows, dim=1)  # (3, H·rows, W·panels)
    array = (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)  # (H', W', 3)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
