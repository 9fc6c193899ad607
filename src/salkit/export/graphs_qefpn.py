"""QE-FPN's bundle graphs: ``encoder`` (X → injection), ``f`` (z, injection → f(z)), ``decoder``.

The runtime solves ``z = f(z, injection)`` with Broyden over the ``f`` graph (fixed iteration
count and memory from the manifest); the solve itself is not a graph.
"""

from __future__ import annotations

import torch
from torch import nn

from salkit.export.graphs import GraphDef

IMAGE_CHANNELS = 3


class _Inject(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.inject(image)


class _F(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, injection: torch.Tensor) -> torch.Tensor:
        return self.model.f(z, injection)


class _Decode(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)


def qefpn_graphs(model: nn.Module, size: int, data_images: torch.Tensor | None = None) -> list[GraphDef]:
    model = model.eval()
    dim = int(model.state_dim)

    def image(b: int, g: torch.Generator) -> torch.Tensor:
        return torch.randn(b, IMAGE_CHANNELS, size, size, generator=g)

    def state(b: int, g: torch.Generator) -> torch.Tensor:
        return torch.randn(b, dim, generator=g)

    graphs = [
        GraphDef("encoder", _Inject(model), ("image",), ("injection",), lambda b, g: (image(b, g),)),
        GraphDef("f", _F(model), ("z", "injection"), ("f_z",), lambda b, g: (state(b, g), state(b, g))),
        GraphDef("decoder", _Decode(model), ("z",), ("logits",), lambda b, g: (state(b, g),)),
    ]
    if data_images is not None:
        with torch.no_grad():
            injection = model.inject(data_images)
            z, _ = model.solve(injection)  # the equilibrium the runtime's solve approaches
        by_name = {"encoder": (data_images,), "f": (z, injection), "decoder": (z,)}
        for graph in graphs:
            graph.data_inputs = by_name[graph.name]
    return graphs


def qefpn_settings(model: nn.Module, train_config: dict) -> dict:
    """The manifest's ``qefpn`` block: state size and the Broyden settings the model was trained with."""
    solver = model.solver_config
    return {
        "state_dim": int(model.state_dim),
        "broyden_iterations": int(solver.f_max_iter),
        "broyden_memory": int(solver.memory),
        "broyden_tol": float(solver.f_tol),
        "stop_mode": str(solver.stop_mode),
        "width": int(model.width),
        "level_sizes": [int(s) for s in model.level_sizes],
    }
