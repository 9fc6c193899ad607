"""An exported graph run in float64 by torch operators equals the torch module in float64."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from salkit.export.onnx_float64 import float64_graph
from salkit.export.onnx_io import export_module
from tests.export.tiny_modules import TinyEnergy


@pytest.mark.parametrize("bn,leaky", [(True, 0.2), (False, 0.0)])
def test_the_exported_energy_runs_in_float64(tmp_path: Path, bn: bool, leaky: float) -> None:
    torch.manual_seed(0)
    energy = TinyEnergy(size=32, leaky=leaky, bn=bn).eval()
    g = torch.Generator().manual_seed(1)
    y, x = 3 * torch.randn(3, 1, 32, 32, generator=g), torch.randn(3, 3, 32, 32, generator=g)
    path = tmp_path / "energy.onnx"
    export_module(energy, (y, x), path, input_names=("saliency", "image"), output_names=("energy",))
    run = float64_graph(onnx.load(str(path)))
    assert run is not None
    (got,) = run({"saliency": y.double().numpy(), "image": x.numpy()})
    with torch.no_grad():
        expected = energy.double()(y.double(), x.double())
    assert got.dtype == np.float64 and got.shape == (3,)
    # With BatchNorm the exporter folds it into the conv weights in float32 (~1e-7 of the terms), and
    # a leaky slope is a float32 attribute; without either, the graph holds the module's own
    # weights and float64 leaves nothing to round.
    tolerance = 1e-6 if bn else 1e-13
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=tolerance * float(expected.abs().max()))


def test_a_graph_with_an_unknown_operator_is_not_run(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Softplus())
    path = tmp_path / "m.onnx"
    export_module(module, (torch.randn(2, 4),), path, input_names=("x",), output_names=("y",))
    assert float64_graph(onnx.load(str(path))) is None
