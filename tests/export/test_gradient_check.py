"""The energy-gradient export check refuses wrong gradient graphs and accepts the right one.

The energy is a small ReLU/LeakyReLU net with BatchNorm statistics as after training, scaled so its
gradient is far from flat; the wrong graphs are the explicit VJP module with one deliberate bug
each, exported and checked exactly as ``export-trt`` does.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from salkit.base.errors import SalkitError
from salkit.export.checks import validate_graph
from salkit.export.grad_check import DIRECTIONAL_TOLERANCE
from salkit.export.graphs import GradientOf, GraphDef
from salkit.export.graphs_coop import energy_autograd
from salkit.export.onnx_io import export_module
from salkit.export.vjp import EnergyGrad, EnergyStructure
from tests.export.tiny_modules import TinyEnergy

torch.set_num_threads(2)
SIZE = 32


def _energy(leaky: float) -> TinyEnergy:
    torch.manual_seed(3)
    energy = TinyEnergy(size=SIZE, widths=(8, 16), leaky=leaky).eval()
    with torch.no_grad():
        energy.net[-1].weight.mul_(20.0)  # a steep energy: its gradient moves maps, not rounding
    return energy


def _structure(energy: TinyEnergy) -> EnergyStructure:
    return EnergyStructure(layers=list(energy.net), reduction=lambda v: -v.sum(dim=1))


def _inputs(b: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return 2 * torch.randn(b, 1, SIZE, SIZE, generator=g), torch.randn(b, 3, SIZE, SIZE, generator=g)


class _TransposedKernel(EnergyGrad):
    """The second conv undone with its kernel transposed (rows ↔ columns)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        stage = self.stages[1]
        stage.weight_t = stage.weight_t.transpose(-1, -2).contiguous()  # (Cout, Cin, kw, kh)


class _MissingMask(EnergyGrad):
    """The first activation's derivative left out (as if every unit were active)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stages[0].slope = None


class _SignError(EnergyGrad):
    def forward(self, saliency: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return -super().forward(saliency, image)


def _export(tmp_path: Path, energy: TinyEnergy, grad_module: nn.Module) -> tuple[GraphDef, Path]:
    args = _inputs(2, torch.Generator().manual_seed(0))
    names = ("saliency", "image")
    export_module(energy, args, tmp_path / "energy.onnx", input_names=names, output_names=("energy",))
    path = tmp_path / "energy_grad.onnx"
    export_module(grad_module.eval(), args, path, input_names=names, output_names=("grad",))
    graph = GraphDef("energy_grad", grad_module, names, ("grad",), _inputs, reference=energy_autograd(energy),
                     gradient_of=GradientOf("energy", _structure(energy)))
    return graph, path


@pytest.mark.parametrize("leaky", [0.0, 0.2])
def test_the_right_gradient_graph_passes_with_a_meaningful_record(tmp_path: Path, leaky: float) -> None:
    energy = _energy(leaky)
    graph, path = _export(tmp_path, energy, EnergyGrad(_structure(energy), 3, SIZE))
    record = validate_graph(graph, path)
    assert record["max_rel_err"] <= 1e-4 and record["directional_rel_err"] <= 1e-2
    assert record["raw_max_rel_err"] >= record["max_rel_err"]
    assert 0.0 <= record["flip_elements"] < 0.5  # most of the gradient is held to the tolerance
    for key in ("random_max_rel_err", "random_directional_rel_err", "random_flip_units", "max_abs_err"):
        assert key in record


@pytest.mark.parametrize("leaky", [0.0, 0.2])
@pytest.mark.parametrize("wrong", [_TransposedKernel, _MissingMask, _SignError], ids=lambda c: c.__name__[1:])
def test_a_wrong_gradient_graph_is_refused(tmp_path: Path, leaky: float, wrong: type[EnergyGrad]) -> None:
    energy = _energy(leaky)
    module = wrong(_structure(energy), 3, SIZE)
    # The bug really matters on the inputs checked: the wrong graph is far from autograd.
    y, x = _inputs(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        truth, bad = energy_autograd(energy)(y, x), module(y, x)
    assert float((bad - truth).norm() / truth.norm()) > 0.1
    graph, path = _export(tmp_path, energy, module)
    record = validate_graph(graph, path, batch_sizes=(1,), enforce_on_random=False)
    assert record["max_rel_err"] > 100 * graph.tolerance  # the element-wise rule alone refuses it …
    assert record["directional_rel_err"] > 10 * DIRECTIONAL_TOLERANCE  # … and so do finite differences alone
    with pytest.raises(SalkitError) as err:
        validate_graph(graph, path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("graph 'energy_grad' output 'grad' on random inputs, batch 1: ")
    assert "tolerance" in message and ("relative" in message or "of the gradient's norm" in message)


def test_the_energy_graph_must_be_exported_beside_its_gradient(tmp_path: Path) -> None:
    energy = _energy(0.0)
    graph, path = _export(tmp_path, energy, EnergyGrad(_structure(energy), 3, SIZE))
    (tmp_path / "energy.onnx").unlink()
    with pytest.raises(SalkitError, match="finite differences of graph 'energy', which is not exported"):
        validate_graph(graph, path)


def _flip_ready_energy() -> tuple[TinyEnergy, tuple[torch.Tensor, torch.Tensor], int, float]:
    """A ReLU energy whose first-layer unit with the largest influence sits 1e-3 roundoffs above 0."""
    torch.manual_seed(4)
    energy = TinyEnergy(size=SIZE, widths=(8, 16), leaky=0.0, bn=False).double().eval()
    y, x = _inputs(1, torch.Generator().manual_seed(5))
    y, x = y.double(), x.double()
    conv = energy.net[0]
    with torch.enable_grad():
        z = conv(torch.cat([torch.sigmoid(y), x], dim=1))  # (1, 8, S, S): first pre-activations
        z.retain_grad()
        (-energy.net[2:](torch.relu(z)).sum()).backward()
    unit = tuple(int(i) for i in np.unravel_index(int((z.grad * (z > 0)).abs().argmax()), z.shape))
    with torch.no_grad():
        terms = torch.nn.functional.conv2d(torch.cat([torch.sigmoid(y), x], dim=1).abs(), conv.weight.abs(),
                                           conv.bias.abs(), padding=1)[unit]  # Σ|w·a| + |b| of that unit
        above = 1e-3 * 2.0 ** -24 * float(terms)
        conv.bias[unit[1]] -= z[unit] - above  # now z[unit] = +1e-3 u·Σ|w·a|
    return energy, (y, x), unit[1], above


def test_a_gradient_whose_mask_flipped_in_float32_is_accepted() -> None:
    """Two valid gradients that differ only in the mask of a unit within rounding of 0: the old
    element-wise rule refused the pair, the envelope accepts it — and only the envelope."""
    from salkit.export import grad_check

    energy, (y, x), channel, above = _flip_ready_energy()
    exact = energy_autograd(energy)(y, x)
    with torch.no_grad():
        energy.net[0].bias[channel] -= 2 * above  # the same unit as far below 0: its mask flips
    flipped = energy_autograd(energy)(y, x)
    with torch.no_grad():
        energy.net[0].bias[channel] += 2 * above
    raw = float((flipped - exact).abs().max() / exact.abs().max())
    assert raw > 1e-3  # the flip alone fails any element-wise tolerance of 1e-4

    def run_energy(saliency: np.ndarray) -> np.ndarray:  # float64, like the exported graph is run
        with torch.no_grad():
            return energy(torch.from_numpy(saliency), x.expand(saliency.shape[0], -1, -1, -1)).numpy()

    structure = _structure(copy.deepcopy(energy).float())
    args = (structure, (y.float(), x.float()), flipped.float().numpy(), exact.numpy(), run_energy, "energy", 1e-4, True, "t")
    record = grad_check.judge_gradient(*args)
    assert record["flip_units"] >= 1 and record["raw_max_rel_err"] == pytest.approx(raw, rel=1e-3)
    assert record["max_rel_err"] <= 1e-4 and record["directional_rel_err"] <= 1e-2
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(grad_check, "FLIP_MARGIN_ULPS", 0.0)  # no unit counts as ambiguous
        with pytest.raises(SalkitError, match=r"^t: ONNX Runtime differs from the float64 gradient .* 0 ReLU units"):
            grad_check.judge_gradient(*args)
