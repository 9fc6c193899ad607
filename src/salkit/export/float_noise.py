"""How much float32 rounding alone moves a function's output, by Monte Carlo arithmetic.

The reference runs in float64 while every torch operation's result is multiplied by ``1 + u·ξ``
(``u`` = float32 unit roundoff, ``ξ`` uniform in [−1, 1], fresh per element and per run): each
operation then carries a random rounding error of float32's size (Parker's Monte Carlo
arithmetic), and the spread of the outputs over a few runs is the rounding noise any float32
implementation of the function must be expected to carry. A sum much smaller than its terms (an
output near 0 made of large values) shows up as a large spread; a well-conditioned output as a
spread near ``u·|output|``. The estimate depends on the function and the input only, not on how
close one particular float32 implementation happened to land.

Each *operation's* result is perturbed once, not each addition inside it, so a reduction of ``n``
terms (a conv, a matmul) carries ~√n times more rounding in a real float32 sum than here
(random-walk accumulation): :data:`ACCUMULATION_FACTOR` is that allowance.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch.overrides import TorchFunctionMode

from salkit.export.grad_check import FLOAT32_UNIT_ROUNDOFF

RUNS = 3
# √1024: a sum of up to ~1000 terms rounded at every addition (blocked and pairwise sums, as
# oneDNN's and MLAS's kernels accumulate, stay below that). Measured on a 512-term cancelling
# matmul: torch float32's error was 5.7× this module's estimate.
ACCUMULATION_FACTOR = 32.0


class _RoundingNoise(TorchFunctionMode):
    """Perturbs the floating-point result of every torch function called inside it."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "").endswith("_"):  # in-place: the caller keeps its tensor
            return out
        return self._perturb(out)

    def _perturb(self, out):
        if isinstance(out, (tuple, list)):
            return type(out)(self._perturb(o) for o in out)
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.numel() == 0:
            return out
        xi = torch.rand(out.shape, generator=self.generator, dtype=out.dtype) * 2 - 1
        return out * (1 + FLOAT32_UNIT_ROUNDOFF * xi)


def float32_noise(module: torch.nn.Module, inputs: Sequence[torch.Tensor], seed: int = 0,
                  runs: int = RUNS) -> tuple[list[torch.Tensor], list[float]]:
    """→ (float64 outputs, per output the largest |perturbed − float64| over ``runs`` runs)."""
    double = copy.deepcopy(module).double()
    args = tuple(t.double() if t.is_floating_point() else t for t in inputs)

    def run(fn: Callable[..., object]) -> list[torch.Tensor]:
        with torch.no_grad():
            out = fn(*args)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    exact = run(double)
    noise = [0.0] * len(exact)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(runs):
        with _RoundingNoise(generator):
            perturbed = run(double)
        noise = [max(n, float((p - e).abs().max())) for n, p, e in zip(noise, perturbed, exact, strict=True)]
    return exact, noise
