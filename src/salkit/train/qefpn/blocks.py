"""Building blocks of QE-FPN's weight-tied transformation f_θ(z; x) and its decoder.

Everything inside f uses GroupNorm, never BatchNorm: f is evaluated dozens of times per batch by
the solver, and batch statistics would couple the samples (the per-sample Broyden solve and its
per-sample residuals assume f acts on each sample alone) and update running stats per iteration.
GroupNorm is written out with Reshape/ReduceMean/Sqrt so the ONNX graph uses only operators that
TensorRT's parser imports (ONNX GroupNormalization is not among them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PlainGroupNorm(nn.Module):
    """GroupNorm from elementary ops (export-safe); same maths as ``nn.GroupNorm``."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        if channels % groups != 0:
            groups = 1
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        grouped = x.reshape(b, self.groups, -1)  # (B, G, C/G·H·W)
        mean = grouped.mean(dim=-1, keepdim=True)  # (B, G, 1)
        centred = grouped - mean
        var = (centred * centred).mean(dim=-1, keepdim=True)  # (B, G, 1), biased like nn.GroupNorm
        normed = (centred / torch.sqrt(var + self.eps)).reshape(b, c, h, w)  # back to (B, C, H, W)
        return normed * self.weight.reshape(1, c, 1, 1) + self.bias.reshape(1, c, 1, 1)  # (C,) → (1, C, 1, 1)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class InjectedResidualBlock(nn.Module):
    """MDEQ's basic block: the injection enters after the second convolution.

    b = relu(GN(GN(conv(relu(GN(conv(z))))) + x) + z))
    """

    def __init__(self, width: int, groups: int) -> None:
        super().__init__()
        self.conv1, self.norm1 = conv3x3(width, width), PlainGroupNorm(groups, width)
        self.conv2, self.norm2 = conv3x3(width, width), PlainGroupNorm(groups, width)
        self.norm3 = PlainGroupNorm(groups, width)

    def forward(self, z: torch.Tensor, injection: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(z)))
        h = self.norm2(self.conv2(h) + injection)
        return F.relu(self.norm3(h + z))


class CrossScaleFusion(nn.Module):
    """Fully connected cross-scale pathway: every level receives every other level.

    finer → coarser: a chain of stride-2 3×3 convolutions (one per halving, GN, ReLU between);
    coarser → finer: 1×1 convolution + GN, then bilinear upsampling to the receiving size.
    Level i's output is GN(relu(Σ_j T_{j→i}(b_j))), T_{i→i} = identity.
    """

    def __init__(self, levels: int, width: int, groups: int) -> None:
        super().__init__()
        self.levels = levels
        self.paths = nn.ModuleDict()
        for src in range(levels):
            for dst in range(levels):
                if src < dst:
                    layers: list[nn.Module] = []
                    for k in range(dst - src):
                        layers += [conv3x3(width, width, stride=2), PlainGroupNorm(groups, width)]
                        if k < dst - src - 1:
                            layers.append(nn.ReLU())
                    self.paths[f"{src}to{dst}"] = nn.Sequential(*layers)
                elif src > dst:
                    self.paths[f"{src}to{dst}"] = nn.Sequential(
                        nn.Conv2d(width, width, 1, bias=False), PlainGroupNorm(groups, width)
                    )
        self.out_norms = nn.ModuleList(PlainGroupNorm(groups, width) for _ in range(levels))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        fused = []
        for dst in range(self.levels):
            size = feats[dst].shape[-2:]
            total = feats[dst]
            for src in range(self.levels):
                if src == dst:
                    continue
                moved = self.paths[f"{src}to{dst}"](feats[src])
                if src > dst:
                    moved = F.interpolate(moved, size=size, mode="bilinear", align_corners=False)
                total = total + moved
            fused.append(self.out_norms[dst](F.relu(total)))
        return fused


class PyramidDecoder(nn.Module):
    """Solved pyramid → logits: all levels upsampled to the finest, concatenated, two convs, ×4 up."""

    def __init__(self, levels: int, width: int) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv2d(levels * width, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, feats: list[torch.Tensor], out_size: int) -> torch.Tensor:
        size = feats[0].shape[-2:]
        ups = [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]]
        logits = self.head(torch.cat(ups, dim=1))  # (B, 1, S/4, S/4)
        return F.interpolate(logits, size=(out_size, out_size), mode="bilinear", align_corners=False)
