"""QE-FPN model: the inject / f / decode contract, per-sample f, full cross-scale coupling,
registry round trip, ONNX export of the three pieces with TensorRT-importable operators."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from salkit.base.errors import SalkitError
from salkit.export.trt_ops import check_graph
from salkit.train.engine.registry import create_model, get_entry

pytestmark = pytest.mark.usefixtures("one_torch_thread")

S = 32  # levels 8, 4, 2, 1: small and still four scales


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("qefpn", preset="tiny", image_size=S).eval()


def test_contract_shapes_and_split_round_trip(model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, S, S)
    inj = model.inject(x)
    w = model.config["width"]
    assert inj.shape == (2, w * (8 * 8 + 4 * 4 + 2 * 2 + 1 * 1)) == (2, model.state_dim)
    assert model.f(inj, inj).shape == inj.shape
    assert model.decode(inj).shape == (2, 1, S, S)
    levels = model.split(inj)
    assert [tuple(lv.shape) for lv in levels] == [(2, w, s, s) for s in (8, 4, 2, 1)]
    assert torch.equal(model.flatten(levels), inj)


def test_f_acts_on_each_sample_alone(model: torch.nn.Module) -> None:
    torch.manual_seed(1)
    z, inj = torch.randn(3, model.state_dim), torch.randn(3, model.state_dim)
    with torch.no_grad():
        batched = model.f(z, inj)
        single = torch.cat([model.f(z[i : i + 1], inj[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_every_level_reaches_every_other_level(model: torch.nn.Module) -> None:
    z = torch.randn(1, model.state_dim, requires_grad=True)
    inj = torch.randn(1, model.state_dim)
    out_levels = model.split(model.f(z, inj))
    for dst, out in enumerate(out_levels):
        probe = torch.randn_like(out)  # not out.sum(): a GroupNorm output sums to a constant
        (grad,) = torch.autograd.grad((out * probe).sum(), z, retain_graph=True)
        for src, g in enumerate(model.split(grad)):
            assert g.abs().sum() > 0, f"level {src} does not reach level {dst}"


def test_forward_is_decode_of_the_solved_state_and_eval_quasi_is_equilibrium(model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, S, S)
    with torch.no_grad():
        logits, stats = model(x, return_stats=True)
        z, _ = model.solve(model.inject(x))
        torch.testing.assert_close(logits, model.decode(z))
        equilibrium = model(x, solver="equilibrium")
    assert torch.equal(logits, equilibrium)  # no Bernoulli mask outside training
    assert stats["iterations"].shape == (2,) and torch.all(stats["residual"] > 0)
    # the reported residual is ‖f(z) − z‖ / ‖z‖ of the returned state
    inj = model.inject(x)
    with torch.no_grad():
        expected = (model.f(z, inj) - z).norm(dim=1) / z.norm(dim=1)
    torch.testing.assert_close(stats["residual"], expected, rtol=1e-4, atol=1e-6)


def test_training_quasi_solve_uses_the_bernoulli_mask() -> None:
    torch.manual_seed(2)
    model = create_model("qefpn", preset="tiny", image_size=S, drop_prob=0.2, f_max_iter=2).train()
    x = torch.randn(2, 3, S, S)
    inj = model.inject(x).detach()
    with torch.no_grad():
        torch.manual_seed(3)
        z_quasi, _ = model.solve(inj, "quasi")
        z_eq, _ = model.solve(inj, "equilibrium")
    assert (z_quasi - z_eq).abs().max() > 1e-3


def test_registry_round_trip_and_user_errors(model: torch.nn.Module) -> None:
    assert get_entry("qefpn").kind == "qefpn"
    rebuilt = create_model("qefpn", **model.config)
    assert rebuilt.config == model.config
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    paper = create_model("qefpn", preset="paper", backbone="resnet18", image_size=64)
    assert paper.config["width"] == 64 and paper.config["solver"] == "quasi" and paper.config["drop_prob"] == 5e-7
    with pytest.raises(SalkitError, match="multiple of 32"):
        create_model("qefpn", preset="tiny", image_size=50)
    with pytest.raises(SalkitError, match="'newton'"):
        create_model("qefpn", preset="tiny", solver="newton")
    with pytest.raises(SalkitError, match="colour"):
        create_model("qefpn", preset="tiny", colour=3)


def _export(module: torch.nn.Module, args: tuple, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(module, args, buffer, input_names=inputs, output_names=outputs, opset_version=17,
                      dynamo=False, dynamic_axes={n: {0: "batch"} for n in inputs + outputs})
    return onnx.load_from_string(buffer.getvalue())


class _Piece(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method  # the model as a submodule: its weights become initializers

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(*args)


def test_inject_f_decode_export_to_trt_importable_onnx(model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, S, S)
    with torch.no_grad():
        inj = model.inject(x)
        z = torch.randn_like(inj)
        pieces = {
            "encoder": ("inject", (x,), ["image"], ["injection"]),
            "f": ("f", (z, inj), ["z", "injection"], ["f_z"]),
            "decoder": ("decode", (z,), ["z"], ["logits"]),
        }
        for name, (method, args, inputs, outputs) in pieces.items():
            fn = getattr(model, method)
            graph = _export(_Piece(model, method).eval(), args, inputs, outputs)  # export restores the wrapper's mode
            ops = check_graph(graph, name)  # raises on any operator TensorRT cannot import
            assert "Bernoulli" not in ops and "GroupNormalization" not in ops
            graph.ir_version = min(graph.ir_version, 8)
            session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
            got = session.run(None, {n: a.numpy() for n, a in zip(inputs, args, strict=True)})[0]
            np.testing.assert_allclose(got, fn(*args).numpy(), atol=2e-4, rtol=1e-4)
