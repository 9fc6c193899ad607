"""The explicit energy gradient equals autograd, and exports without convolution_backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from salkit.base.errors import SalkitError
from salkit.export.vjp import EnergyGrad, EnergyStructure
from tests.export.tiny_modules import TinyEnergy

torch.set_num_threads(2)


def _autograd(energy: nn.Module, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    y = y.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(y, x).sum(), y)
    return grad


def _structure(energy: TinyEnergy) -> EnergyStructure:
    return EnergyStructure(layers=list(energy.net), reduction=lambda v: -v.sum(dim=1))


@pytest.mark.parametrize("size", [32, 33])  # 33: odd size, strided convs drop a row (output_padding)
@pytest.mark.parametrize("bn,leaky", [(True, 0.2), (False, 0.0)])
def test_energy_grad_matches_autograd_in_float64(size: int, bn: bool, leaky: float) -> None:
    torch.manual_seed(0)
    energy = TinyEnergy(size=size, bn=bn, leaky=leaky).double().eval()
    grad_module = EnergyGrad(_structure(energy), image_channels=3, size=size)
    y, x = torch.randn(3, 1, size, size, dtype=torch.float64) * 3, torch.randn(3, 3, size, size, dtype=torch.float64)
    expected = _autograd(energy, y, x)
    got = grad_module(y, x)
    assert got.shape == (3, 1, size, size)
    assert (got - expected).abs().max() <= 1e-10 * expected.abs().max()


def test_energy_grad_matches_autograd_in_float32() -> None:
    torch.manual_seed(1)
    energy = TinyEnergy().eval()
    grad_module = EnergyGrad(_structure(energy), image_channels=3, size=32)
    y, x = torch.randn(2, 1, 32, 32) * 3, torch.rand(2, 3, 32, 32)
    expected = _autograd(energy, y, x)
    rel = ((grad_module(y, x) - expected).abs().max() / expected.abs().max()).item()
    assert rel <= 1e-4, rel


def test_saliency_channel_after_the_image() -> None:
    torch.manual_seed(2)
    energy = TinyEnergy().double().eval()
    structure = EnergyStructure(layers=list(energy.net), saliency_first=False, reduction=lambda v: -v.sum(1))
    grad_module = EnergyGrad(structure, image_channels=3, size=32)

    def swapped(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -energy.net(torch.cat([x, torch.sigmoid(y)], dim=1)).sum(1)

    y, x = torch.randn(2, 1, 32, 32, dtype=torch.float64), torch.randn(2, 3, 32, 32, dtype=torch.float64)
    assert torch.allclose(grad_module(y, x), _autograd(swapped, y, x), rtol=1e-10, atol=1e-12)


def test_non_affine_tail_is_refused() -> None:
    layers = [nn.Conv2d(4, 4, 3, 1, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)]
    structure = EnergyStructure(layers=layers, reduction=lambda v: (v ** 2).sum(1))
    with pytest.raises(SalkitError, match="not affine"):
        EnergyGrad(structure, image_channels=3, size=8)


def test_unknown_layer_in_the_body_is_refused() -> None:
    layers = [nn.Conv2d(4, 4, 3, 1, 1), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)]
    with pytest.raises(SalkitError, match="MaxPool2d"):
        EnergyGrad(EnergyStructure(layers=layers), image_channels=3, size=8)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_exported_graph_has_no_gradient_operators(tmp_path, exporter: str) -> None:
    import onnx

    from salkit.export.onnx_io import export_module

    energy = TinyEnergy().eval()
    grad_module = EnergyGrad(_structure(energy), image_channels=3, size=32).eval()
    path = tmp_path / "g.onnx"
    export_module(grad_module, (torch.randn(2, 1, 32, 32), torch.rand(2, 3, 32, 32)), path,
                  input_names=["saliency", "image"], output_names=["grad"], exporter=exporter)
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert "ConvTranspose" in ops and "Conv" in ops
    assert not any("Grad" in op or "backward" in op.lower() for op in ops), ops
    assert model.ir_version <= 13 and [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim][:1] == ["batch"]
    import onnxruntime as ort

    y, x = torch.randn(5, 1, 32, 32) * 3, torch.rand(5, 3, 32, 32)  # another batch size than exported with
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["grad"], {"saliency": y.numpy(), "image": x.numpy()})[0]
    expected = _autograd(energy, y, x)
    assert (torch.from_numpy(got) - expected).abs().max() <= 1e-4 * expected.abs().max()
