"""What a bundle graph is before it is exported: a module, its I/O names, inputs to try it on, and
the torch reference its ONNX twin must reproduce."""

from __future__ import annotations

import copy
import dataclasses
from typing import Callable

import torch

from salkit.export.vjp import EnergyStructure

# batch size → example inputs (same order as input_names)
InputFactory = Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]


@dataclasses.dataclass
class GradientOf:
    """Marks a graph whose output is the gradient of another exported graph's scalar output
    (per sample) with respect to its first input; both graphs take the same inputs."""

    energy_graph: str  # that graph's name; the export writes it as <name>.onnx beside this one
    structure: EnergyStructure  # its layout, whose ReLU masks make the gradient ill-conditioned


@dataclasses.dataclass
class GraphDef:
    name: str
    module: torch.nn.Module
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    random_inputs: InputFactory
    # The function the ONNX graph is checked against (defaults to the module itself in eager mode).
    reference: Callable[..., tuple[torch.Tensor, ...] | torch.Tensor] | None = None
    # Inputs derived from real images (same order as input_names); filled in by the kind's builder.
    data_inputs: tuple[torch.Tensor, ...] | None = None
    # Relative tolerance (max abs error / max |reference|) for fp32 graphs.
    tolerance: float = 1e-4
    # Set on gradient graphs, which are judged by salkit.export.grad_check's rules instead.
    gradient_of: GradientOf | None = None
    # When the graph is fed something computed from its inputs: ``random_inputs``, ``data_inputs``
    # and ``reference`` speak of the inputs (e.g. the energy's saliency and image), the ONNX graph
    # takes ``feeds_from(*inputs)`` (saliency and the image's precomputed share, named by
    # ``input_names``). None: the graph takes its inputs as they are.
    feeds_from: Callable[..., tuple[torch.Tensor, ...]] | None = None

    def feeds(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What the ONNX graph is fed for ``inputs`` (in ``input_names`` order)."""
        if self.feeds_from is None:
            return tuple(inputs)
        with torch.no_grad():
            return tuple(self.feeds_from(*inputs))

    def run_reference(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fn = self.reference or self.module
        out = fn(*inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def run_reference_float64(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        """The reference in float64 (a copy of its module), or None if it is not a module."""
        fn = self.reference or self.module
        if not isinstance(fn, torch.nn.Module):
            return None
        double = copy.deepcopy(fn).double()
        out = double(*(t.double() if t.is_floating_point() else t for t in inputs))
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)
