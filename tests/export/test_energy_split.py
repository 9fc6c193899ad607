"""The energy with its constant part precomputed equals the whole energy.

U sees ``cat(X, sigmoid(Y))``; its first convolution is linear in its input channels, so
``conv(cat(X, s)) = conv_X(X) + conv_s(s)`` and X's share (bias included) can be computed once for
the K Langevin steps. Checked in float32 on the tiny preset's energy and on a paper-size one (352²,
the paper preset's width) with one random input each: the energy's values within 1e-5, and its
gradients with respect to both inputs within 1e-5 of the largest element — plus, element by
element, what flipping the ReLU units that lie within float32 rounding of 0 could change
(salkit.export.grad_check.flip_envelope; 0 away from them), since which side such a unit takes
depends on the summation order of whichever kernels this CPU runs. The same for the exported
modules (salkit.export.vjp): ``EnergyGradStep(y, EnergyImageTerm(x))`` against ``EnergyGrad(y, x)``.
"""

from __future__ import annotations

import pytest
import torch

from salkit.export.grad_check import flip_envelope
from salkit.export.graphs_coop import energy_structure
from salkit.export.vjp import EnergyGrad, EnergyGradStep, EnergyImageTerm
from salkit.train.coop.energy import CoopEnergy
from salkit.train.coop.model import PRESETS

torch.set_num_threads(2)
TOLERANCE = 1e-5


def _energy(preset: str, seed: int = 0) -> CoopEnergy:
    """The preset's energy at its size and width, with BatchNorm statistics and affine parameters
    away from their defaults (the folded bias must carry them)."""
    torch.manual_seed(seed)
    energy = CoopEnergy(PRESETS[preset]["image_size"], PRESETS[preset]["energy_width"])
    with torch.no_grad():
        for m in energy.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    return energy.eval()


def _input(energy: CoopEnergy, batch: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    size = energy.image_size
    return 3 * torch.randn(batch, 1, size, size, generator=g), torch.randn(batch, 3, size, size, generator=g)


def _value_and_input_grads(fn, y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    y, x = y.clone().requires_grad_(True), x.clone().requires_grad_(True)
    value = fn(y, x)
    grad_y, grad_x = torch.autograd.grad(value.sum(), (y, x))
    return value.detach(), grad_y, grad_x


def _within(got: torch.Tensor, expected: torch.Tensor, envelope: torch.Tensor, what: str) -> None:
    """|got − expected| ≤ 1e-5 · max |expected| + the mask-flip envelope, element by element."""
    excess = ((got - expected).abs() - envelope).max().item()
    scale = expected.abs().max().item()
    assert scale > 0 and excess <= TOLERANCE * scale, f"{what}: {excess:.3g} beyond the flip envelope, scale {scale:.3g}"


@pytest.mark.parametrize("preset, batch", [("tiny", 2), ("paper", 1)])
def test_energy_with_its_image_share_precomputed_equals_the_whole_energy(preset: str, batch: int) -> None:
    energy = _energy(preset)
    y, x = _input(energy, batch)
    whole = _value_and_input_grads(energy, y, x)
    split = _value_and_input_grads(lambda y_, x_: energy.from_image_term(y_, energy.image_term(x_)), y, x)
    assert energy.image_term(x).shape == (batch, energy.net[0].out_channels, energy.image_size, energy.image_size)
    assert torch.allclose(split[0], whole[0], rtol=TOLERANCE, atol=TOLERANCE), (split[0], whole[0])
    structure = energy_structure(energy)
    (envelope_y, envelope_x), _ = flip_envelope(structure, y, x, image_too=True)
    _within(split[1], whole[1], envelope_y, f"{preset}: ∂U/∂Y")
    _within(split[2], whole[2], envelope_x, f"{preset}: ∂U/∂X")

    # The exported gradient modules: X's share once, then the step from it, against the whole graph.
    grad = EnergyGrad(structure, 3, energy.image_size).eval()
    with torch.no_grad():
        term = EnergyImageTerm(grad)(x)
        stepped, full = EnergyGradStep(grad)(y, term), grad(y, x)
    assert term.shape == energy.image_term(x).shape  # (BatchNorm folded in: the exported graph's pre-activation)
    _within(stepped, full, envelope_y, f"{preset}: EnergyGradStep ∘ EnergyImageTerm vs EnergyGrad")
    _within(stepped, whole[1], envelope_y + 1e-4 * whole[1].abs().max(), f"{preset}: EnergyGradStep vs autograd")


def test_the_split_is_exact_in_float64() -> None:
    """In float64 (rounding ~1e-16, no unit near enough to 0 to flip) the identity holds to 1e-12."""
    energy = _energy("tiny").double()
    y, x = (t.double() for t in _input(energy, 3))
    whole = _value_and_input_grads(energy, y, x)
    split = _value_and_input_grads(lambda y_, x_: energy.from_image_term(y_, energy.image_term(x_)), y, x)
    for a, b in zip(split, whole, strict=True):
        assert (a - b).abs().max() <= 1e-12 * b.abs().max()
    grad = EnergyGrad(energy_structure(energy), 3, energy.image_size).eval()
    stepped = EnergyGradStep(grad)(y, EnergyImageTerm(grad)(x))
    assert (stepped - whole[1]).abs().max() <= 1e-12 * whole[1].abs().max()


def test_the_image_share_does_not_depend_on_the_saliency() -> None:
    """What is precomputed is X's alone: changing Y leaves it, and only it, unchanged."""
    energy = _energy("tiny")
    y, x = _input(energy, 2)
    grad = EnergyGrad(energy_structure(energy), 3, energy.image_size).eval()
    term = EnergyImageTerm(grad)(x)
    with torch.no_grad():
        assert torch.equal(EnergyImageTerm(grad)(x), term)
        other = EnergyGradStep(grad)(-y, term)
        assert not torch.allclose(other, EnergyGradStep(grad)(y, term))
        _within(other, grad(-y, x), flip_envelope(energy_structure(energy), -y, x)[0], "another Y, same image share")
