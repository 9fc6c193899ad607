"""The export checks' float64 arbitration: float32 cancellation noise passes, a wrong graph does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salkit.export.checks import FLOAT32_NOISE_FACTOR, _judge_against_float64
from salkit.export.graphs import GraphDef
from salkit.kernels.errors import SalkitError


class _Cancelling(torch.nn.Module):
    """(x @ W) − (x @ W′) with W′ ≈ W: a small output made of large float32 terms."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(1e3 * torch.randn(512, 4, generator=g))
        self.w2 = torch.nn.Parameter(self.w.detach() + 1e-3 * torch.randn(512, 4, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w - x @ self.w2


@pytest.fixture
def cancelling() -> tuple[GraphDef, tuple[torch.Tensor], np.ndarray, np.ndarray]:
    module = _Cancelling()
    graph = GraphDef("cancel", module, ("x",), ("y",), lambda b, g: (torch.randn(b, 512, generator=g),))
    inputs = (torch.randn(3, 512, generator=torch.Generator().manual_seed(1)),)
    with torch.no_grad():
        expected = module(*inputs).numpy()
        exact = module.double()(inputs[0].double()).numpy()
    module.float()
    return graph, inputs, expected, exact


def test_float32_noise_of_torch_size_is_accepted(cancelling) -> None:  # type: ignore[no-untyped-def]
    graph, inputs, expected, exact = cancelling
    torch_err = np.abs(expected - exact).max()
    assert torch_err > 1e-4 * np.abs(exact).max()  # the case the arbitration exists for
    # Another float32 implementation: off from the truth by about as much as torch, differently.
    got = (exact - (expected - exact)).astype(np.float32)
    err = float(np.abs(got - expected).max())
    abs_err, rel_err = _judge_against_float64(graph, inputs, "t", "y", got, expected, err, err / np.abs(expected).max(), 1e-4)
    assert abs_err == pytest.approx(np.abs(got.astype(np.float64) - exact).max())
    assert rel_err == pytest.approx(abs_err / np.abs(exact).max())


def test_a_wrong_output_is_still_refused(cancelling) -> None:  # type: ignore[no-untyped-def]
    graph, inputs, expected, exact = cancelling
    torch_err = np.abs(expected - exact).max()
    got = (exact + 2 * FLOAT32_NOISE_FACTOR * torch_err).astype(np.float32)
    err = float(np.abs(got - expected).max())
    with pytest.raises(SalkitError, match="float64 ONNX Runtime is off by"):
        _judge_against_float64(graph, inputs, "t", "y", got, expected, err, err / np.abs(expected).max(), 1e-4)


def test_a_plain_function_reference_cannot_be_arbitrated() -> None:
    graph = GraphDef("f", torch.nn.Identity(), ("x",), ("y",), lambda b, g: (torch.zeros(b, 1),),
                     reference=lambda x: x + 1)
    x = torch.zeros(1, 1)
    with pytest.raises(SalkitError, match="differs from the torch reference"):
        _judge_against_float64(graph, (x,), "t", "y", np.zeros((1, 1), np.float32), np.ones((1, 1), np.float32), 1.0, 1.0, 1e-4)
