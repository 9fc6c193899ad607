"""The latent-variable generator G(X, h) of the cooperative model.

``encode(x)`` runs the backbone, reduces each level to the decoder width with a 3×3 conv
(the MiDaS "scratch" layers) and applies the fusion blocks' skip-path residual units to the three
lower levels: none of that sees h, so N latent samples of one image share one ``encode`` (the
skip units alone are a fifth of a decoder pass at 352²). ``decode(feats, h)`` tiles h ∈ R^d over
the top (stride-32) map, concatenates, maps back to the decoder width with a 3×3 conv, then fuses
high → low levels with MiDaS-style feature-fusion blocks (add the prepared skip, residual conv
unit, bilinear upsampling) and a small head. The output
is a logit map at 4× the stride-4 map's size, i.e. the input size for S divisible by 32.
The decoder has no batch norm, so its output for one image never depends on the rest of
the batch.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from salkit.train.engine.backbone import build_backbone


class ResidualConvUnit(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, 1, 1)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU not in-place: x is reused by the skip connection.
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """out = conv1x1(upsample(RCU2(x + RCU1(skip)))) — MiDaS's fusion block, in two parts:
    ``prepare_skip`` (RCU1, independent of the top-down path) and ``forward`` (the rest).

    ``forward`` applies the 1×1 conv *before* the bilinear upsampling: both are linear, the conv
    mixes channels per pixel and the interpolation weights of each output pixel sum to 1 (so the
    bias passes through), hence upsample(conv1x1(x)) = conv1x1(upsample(x)) up to float rounding,
    at a quarter of the conv's work.
    """

    def __init__(self, width: int, with_skip: bool = True) -> None:
        super().__init__()
        self.skip_unit = ResidualConvUnit(width) if with_skip else None
        self.unit = ResidualConvUnit(width)
        self.out_conv = nn.Conv2d(width, width, 1)

    def prepare_skip(self, skip: torch.Tensor) -> torch.Tensor:
        if self.skip_unit is None:
            raise ValueError("this fusion block has no skip input")
        return self.skip_unit(skip)

    def forward(self, x: torch.Tensor, prepared_skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        if prepared_skip is not None:
            x = x + prepared_skip
        x = self.out_conv(self.unit(x))
        if tuple(size) == (2 * x.shape[2], 2 * x.shape[3]):
            # The same sampling (align_corners maps by sizes, not by the factor), but the exported
            # Resize gets constant scales, which ONNX Runtime needs to keep it in the NCHWc layout.
            return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class CoopGenerator(nn.Module):
    def __init__(
        self,
        backbone: str = "resnet50",
        latent_dim: int = 8,
        decoder_width: int = 64,
        backbone_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.backbone = build_backbone(backbone, backbone_weights)
        self.reduce = nn.ModuleList(nn.Conv2d(c, decoder_width, 3, 1, 1, bias=False) for c in self.backbone.channels)
        self.latent_conv = nn.Conv2d(decoder_width + latent_dim, decoder_width, 3, 1, 1)
        # The top block has no skip input: no unused parameters (DDP requires every one to get a gradient).
        self.fusions = nn.ModuleList(FeatureFusionBlock(decoder_width, with_skip=i > 0) for i in range(4))
        half = max(decoder_width // 2, 8)
        self.head = nn.Sequential(
            nn.Conv2d(decoder_width, half, 3, 1, 1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(half, 32, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 1, 1),
        )

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B,3,S,S) normalised → [feat0 … feat3], each (B, width, S/4·2^-i, …): levels 0–2 are
        prepared skips (after their fusion block's skip unit), level 3 the reduced top map."""
        f1, f2, f3, f4 = (conv(f) for conv, f in zip(self.reduce, self.backbone(x), strict=True))
        return [self.fusions[3].prepare_skip(f1), self.fusions[2].prepare_skip(f2), self.fusions[1].prepare_skip(f3), f4]

    def decode(self, feats: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """feats from ``encode`` (batch B) and h (B, d) → logits (B, 1, S, S)."""
        f1, f2, f3, f4 = feats
        # h (B,d) → (B,d,1,1) → tiled (B,d,h4,w4) over the top map.
        tiled = h[:, :, None, None].expand(-1, -1, f4.shape[2], f4.shape[3])
        top = self.latent_conv(torch.cat([f4, tiled], dim=1))
        x = self.fusions[0](top, None, f3.shape[-2:])
        x = self.fusions[1](x, f3, f2.shape[-2:])
        x = self.fusions[2](x, f2, f1.shape[-2:])
        x = self.fusions[3](x, f1, (2 * f1.shape[2], 2 * f1.shape[3]))
        return self.head(x)

    def decode_samples(self, feats: list[torch.Tensor], latents: torch.Tensor) -> torch.Tensor:
        """One encode, N latents: feats (batch B), latents (N, B, d) → logits (N, B, 1, S, S)."""
        n, b, d = latents.shape
        # Each feature (B,C,h,w) → (N·B,C,h,w), sample-major, matching latents (N,B,d) → (N·B,d).
        repeated = [f.unsqueeze(0).expand(n, *f.shape).reshape(n * b, *f.shape[1:]) for f in feats]
        logits = self.decode(repeated, latents.reshape(n * b, d))
        return logits.reshape(n, b, *logits.shape[1:])  # (N·B,1,S,S) → (N,B,1,S,S)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor | list[torch.Tensor]:
        """``decode(encode(x), h)``; with ``h=None`` only ``encode(x)`` (so a data-parallel wrapper's
        forward can run the encoder once and the latent passes reuse its features)."""
        if h is None:
            return self.encode(x)
        return self.decode(self.encode(x), h)
