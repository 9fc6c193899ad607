"""QE-FPN: a quasi-equilibrium feature pyramid for salient object detection (`qefpn`).

Layout (docs/architecture.md contract: ``inject``, ``f``, ``decode``):

* ``inject(x)``: backbone features F2–F5 (strides 4, 8, 16, 32; F1 is discarded) → per level a
  1×1 conv + BN to the pyramid width w → flattened and concatenated (Eq. 11) into ``(B, D)``,
  ``D = w · Σ_l (S/2^(l+2))²``.
* ``f(z, inj)``: the weight-tied transformation. The flat state is split back into the four
  levels; each level runs an MDEQ-style residual block with its injection, then the fully
  connected cross-scale fusion (finer → coarser strided 3×3, coarser → finer 1×1 + bilinear up)
  mixes all levels; the result is flattened again. GroupNorm only (see blocks.py).
* ``decode(z)``: levels upsampled to stride 4, concatenated, two convs, bilinear to S×S → logits.
* ``forward(x)`` solves for the state with the configured solver (solve.py) and decodes.

Presets: ``paper`` (resnet50, w = 64, 352²), ``lite`` (ImageNet EfficientNet-Lite0, w = 32, 256²: real
photographs on a CPU) and ``tiny`` (narrow plain backbone, w = 8, 64²).
Explicit options override the preset; ``None`` keeps it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from salkit.base.errors import SalkitError
from salkit.train.engine.backbone import build_backbone
from salkit.train.engine.registry import register_model
from salkit.train.qefpn.blocks import CrossScaleFusion, InjectedResidualBlock, PyramidDecoder
from salkit.train.qefpn.solve import (
    SOLVERS,
    SolverConfig,
    bernoulli_keep_mask,
    quasi_map,
    solve_implicit,
    solve_unrolled,
)

LEVELS = 4
_SOLVER_DEFAULTS = asdict(SolverConfig())
PRESETS: dict[str, dict[str, Any]] = {
    "lite": {"backbone": "efficientnet-lite0", "width": 32, "groups": 4, "image_size": 256, "solver": "quasi",
             **{**_SOLVER_DEFAULTS, "f_max_iter": 12, "b_max_iter": 12, "memory": 12}},
    "paper": {"backbone": "resnet50", "width": 64, "groups": 8, "image_size": 352, "solver": "quasi", **_SOLVER_DEFAULTS},
    "tiny": {
        "backbone": "tiny", "width": 8, "groups": 2, "image_size": 64, "solver": "quasi",
        **{**_SOLVER_DEFAULTS, "f_max_iter": 12, "b_max_iter": 12, "memory": 12, "unrolled_layers": 3},
    },
}


class QEFPN(nn.Module):
    kind = "qefpn"

    def __init__(
        self,
        backbone: str,
        width: int,
        groups: int,
        image_size: int,
        solver: str,
        backbone_weights: str | None = None,
        **solver_options: Any,
    ) -> None:
        super().__init__()
        if image_size % 32 != 0:
            raise SalkitError(f"image size must be a multiple of 32, got {image_size}")
        if solver not in SOLVERS:
            raise SalkitError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
        self.solver_config = SolverConfig(**solver_options)
        self.solver = solver
        self.encoder = build_backbone(backbone, backbone_weights)
        self.inject_convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.BatchNorm2d(width)) for c in self.encoder.channels
        )
        self.blocks = nn.ModuleList(InjectedResidualBlock(width, groups) for _ in range(LEVELS))
        self.fusion = CrossScaleFusion(LEVELS, width, groups)
        self.decoder = PyramidDecoder(LEVELS, width)
        self.width, self.image_size = width, image_size
        self.level_sizes = [image_size // 2 ** (level + 2) for level in range(LEVELS)]
        self.state_dim = width * sum(s * s for s in self.level_sizes)
        self.config = {
            "backbone": backbone, "width": width, "groups": groups, "image_size": image_size, "solver": solver,
            **asdict(self.solver_config),
        }

    # -- the three exported pieces ---------------------------------------------------------
    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """(B, D) -> per level (B, w, s_l, s_l)."""
        levels, offset = [], 0
        for s in self.level_sizes:
            n = self.width * s * s
            levels.append(z[:, offset : offset + n].reshape(z.shape[0], self.width, s, s))  # (B, w, s, s)
            offset += n
        return levels

    @staticmethod
    def flatten(levels: list[torch.Tensor]) -> torch.Tensor:
        """per level (B, w, s_l, s_l) -> (B, D), Eq. 11's concatenation of vec(F_l)."""
        return torch.cat([lv.reshape(lv.shape[0], -1) for lv in levels], dim=1)  # (B, D)

    def inject(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)  # F2..F5 at strides 4, 8, 16, 32
        return self.flatten([conv(feat) for conv, feat in zip(self.inject_convs, feats, strict=True)])

    def f(self, z: torch.Tensor, inj: torch.Tensor) -> torch.Tensor:
        blocks = [block(zl, xl) for block, zl, xl in zip(self.blocks, self.split(z), self.split(inj), strict=True)]
        return self.flatten(self.fusion(blocks))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.split(z), self.image_size)

    # -- solving -----------------------------------------------------------------------------
    def solve(
        self, inj: torch.Tensor, solver: str | None = None, fixed_iterations: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Pyramid state for the injection ``inj`` (B, D) and solver stats (iterations, residual;
        ``dropped``: entries the quasi mask zeroed). ``generator`` draws the training mask."""
        solver = solver or self.solver
        if solver not in SOLVERS:
            raise SalkitError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
        z0 = torch.zeros_like(inj)

        def f(z: torch.Tensor) -> torch.Tensor:
            return self.f(z, inj)

        if solver == "unrolled":
            return solve_unrolled(f, z0, self.solver_config.unrolled_layers)
        h, dropped = f, 0
        if solver == "quasi" and self.training:
            mask = bernoulli_keep_mask(inj.shape, self.solver_config.drop_prob, inj.device, inj.dtype, generator)
            dropped = int((mask == 0).sum())
            h = quasi_map(f, mask)
        z, stats = solve_implicit(h, z0, self.solver_config, fixed_iterations=fixed_iterations)
        stats["dropped"] = dropped
        return z, stats

    def forward(
        self, x: torch.Tensor, solver: str | None = None, return_stats: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        z, stats = self.solve(self.inject(x), solver, generator=generator)
        logits = self.decode(z)
        return (logits, stats) if return_stats else logits


@register_model("qefpn", kind="qefpn")
def qefpn(preset: str = "paper", **options: Any) -> QEFPN:
    if preset not in PRESETS:
        raise SalkitError(f"unknown qefpn preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = set(options) - set(PRESETS[preset]) - {"backbone_weights"}
    if unknown:
        raise SalkitError(f"unknown qefpn option(s) {sorted(unknown)}")
    return QEFPN(**{**PRESETS[preset], **options})
