"""The export checks' float64 arbitration for smooth graphs: float32 rounding noise of the function
passes — however close torch's own float32 result happened to land — and a wrong output does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salkit.base.errors import SalkitError
from salkit.export.checks import _judge_against_float64
from salkit.export.float_noise import ACCUMULATION_FACTOR, float32_noise
from salkit.export.graphs import GraphDef


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


def _judge(graph: GraphDef, inputs: tuple[torch.Tensor], got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    err = float(np.abs(got.astype(np.float64) - expected).max())
    return _judge_against_float64(graph, inputs, "t", "y", got, expected, err, err / np.abs(expected).max(), 1e-4)


def test_monte_carlo_noise_is_of_float32_size(cancelling) -> None:
    graph, inputs, expected, exact = cancelling
    exact_mc, (noise,) = float32_noise(graph.module, inputs)
    np.testing.assert_allclose(exact_mc[0].numpy(), exact, rtol=1e-12)
    torch_err = np.abs(expected - exact).max()
    assert torch_err > 1e-4 * np.abs(exact).max()  # the case the arbitration exists for
    assert torch_err / ACCUMULATION_FACTOR < noise < torch_err  # a per-operation estimate, below a real sum's
    _, (well_conditioned,) = float32_noise(torch.nn.Linear(512, 4).double(), inputs)
    assert well_conditioned < 1e-6  # no cancellation, no noise beyond rounding


def test_float32_noise_of_torch_size_is_accepted(cancelling) -> None:
    graph, inputs, expected, exact = cancelling
    # Another float32 implementation: off from the truth by about as much as torch, differently.
    got = (exact - (expected - exact)).astype(np.float32)
    abs_err, rel_err = _judge(graph, inputs, got, expected)
    assert abs_err == pytest.approx(np.abs(got.astype(np.float64) - exact).max())
    assert rel_err == pytest.approx(abs_err / np.abs(exact).max())


def test_a_lucky_torch_float32_does_not_make_float32_noise_fail(cancelling) -> None:
    """torch float32 equal to float64 (the old rule then allowed ONNX Runtime no noise at all)."""
    graph, inputs, expected, exact = cancelling
    got = (exact + (expected - exact)[::-1]).astype(np.float32)  # float32-sized noise, elsewhere
    _judge(graph, inputs, got, exact.astype(np.float32))


def test_a_wrong_output_is_still_refused(cancelling) -> None:
    graph, inputs, expected, exact = cancelling
    _, (noise,) = float32_noise(graph.module, inputs)
    got = (exact + 2 * ACCUMULATION_FACTOR * noise).astype(np.float32)
    with pytest.raises(SalkitError, match=r"against float64 ONNX Runtime is off by .* allowed \(float32 rounding noise"):
        _judge(graph, inputs, got, expected)


def test_a_plain_function_reference_cannot_be_arbitrated() -> None:
    graph = GraphDef("f", torch.nn.Identity(), ("x",), ("y",), lambda b, g: (torch.zeros(b, 1),),
                     reference=lambda x: x + 1)
    x = torch.zeros(1, 1)
    with pytest.raises(SalkitError, match="differs from the torch reference"):
        _judge_against_float64(graph, (x,), "t", "y", np.zeros((1, 1), np.float32), np.ones((1, 1), np.float32), 1.0, 1.0, 1e-4)
