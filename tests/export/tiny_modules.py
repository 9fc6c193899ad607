"""Small stand-in modules with the shapes of the coop energy net, for export tests that must not
depend on the training code (the real models are exercised through the bundle fixtures)."""

from __future__ import annotations

import torch
from torch import nn


class TinyEnergy(nn.Module):
    """``U(Y, X) = −sum(Linear(Flatten(body(cat(sigmoid(Y), X)))))`` like the authors' descriptor."""

    def __init__(self, size: int = 32, widths: tuple[int, ...] = (8, 16), leaky: float = 0.2, bn: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(4, widths[0], 3, 1, 1)]
        layers += [nn.BatchNorm2d(widths[0])] if bn else []
        layers += [nn.LeakyReLU(leaky)]
        c, hw = widths[0], size
        for w in widths[1:]:
            layers += [nn.Conv2d(c, w, 4, 2, 1, bias=not bn)] + ([nn.BatchNorm2d(w)] if bn else []) + [nn.LeakyReLU(leaky)]
            c, hw = w, hw // 2
        layers += [nn.Conv2d(c, 1, 4, 1, 0), nn.Flatten(), nn.Linear((hw - 3) ** 2, 10)]
        self.net = nn.Sequential(*layers)
        with torch.no_grad():  # non-trivial running statistics, as after training
            for m in self.net:
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -self.net(torch.cat([torch.sigmoid(y), x], dim=1)).sum(dim=1)
