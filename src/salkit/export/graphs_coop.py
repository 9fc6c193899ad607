"""The cooperative model's bundle graphs (docs/architecture.md, "Bundle").

``encoder`` runs once per image and ``latent_decoder`` once per latent sample, so N samples share
one backbone pass; ``generator`` is the two in one call. ``energy_grad`` is the explicit
vector–Jacobian module of :mod:`salkit.export.vjp`, checked against float64 autograd of ``energy``
and finite differences of the exported ``energy`` graph (:mod:`salkit.export.grad_check`).

With ``split_energy`` (``export-trt --split-energy``; off by default) ``energy_image`` and
``energy_grad_step`` split ``energy_grad`` at U's first convolution: X's share ``conv_X(X) + b``
once per predict (``image_term``), then each Langevin step only the saliency channel's convolution
on top of it (the runtime uses them when present, see ``salkit.runtime.kinds.coop.splits_energy``).
``energy_grad_step`` is checked exactly like ``energy_grad`` — at (saliency, image), fed (saliency,
image_term) — and ``energy_grad`` stays in the bundle for runtimes that predate the split.

Why off by default: the share saved is 1.7 % of a step's FLOPs at 352² (the first convolution is
4 → 32 channels at full resolution; the rest of the gradient is ~98 %), while the step graph adds
an elementwise Add over a (B, 32, S, S) tensor that ONNX Runtime does not fuse into the NCHWc
convolution (plus a separate Relu and a layout reorder). Measured on an AVX-512 Xeon (2 cores, no
AMX), one descent's gradient work (K = 5) at the paper preset's energy: 0.73–0.97× with ONNX
Runtime and 0.90–0.99× with OpenVINO at batches 1, 2 and 8 over three interleaved runs on a shared
machine, i.e. slower (``python -m experiments.energy_split_speed``).
"""

from __future__ import annotations

import torch
from torch import nn

from salkit.base.errors import SalkitError
from salkit.export.graphs import GradientOf, GraphDef
from salkit.export.vjp import EnergyGrad, EnergyGradStep, EnergyImageTerm, EnergyStructure

IMAGE_CHANNELS = 3


class _Encoder(nn.Module):
    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.generator.encode(image))


class _LatentDecoder(nn.Module):
    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, *feats_and_latent: torch.Tensor) -> torch.Tensor:
        *feats, latent = feats_and_latent
        return self.generator.decode(list(feats), latent)


class _Generator(nn.Module):
    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return self.generator(image, latent)


def energy_structure(energy: nn.Module) -> EnergyStructure:
    """The layout of ``CoopEnergy``: ``-net(cat(X, sigmoid(Y))).sum(1)``.

    Written from the module's documented contract; the export checks the resulting gradient
    against autograd of ``energy`` itself, so a drift in that contract fails loudly.
    """
    net = getattr(energy, "net", None)
    if not isinstance(net, nn.Sequential):
        raise SalkitError(f"energy module {type(energy).__name__} has no nn.Sequential 'net'; "
                          "cannot build its gradient graph")
    return EnergyStructure(layers=list(net), saliency_channels=1, saliency_first=False,
                           reduction=lambda v: -v.sum(dim=1))


def energy_autograd(energy: nn.Module) -> nn.Module:
    """∂U/∂Y by autograd: the reference the exported gradient graph must match."""

    class _Autograd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.energy = energy  # a submodule, so the export checks can copy it to float64

        def forward(self, saliency: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                y = saliency.detach().clone().requires_grad_(True)
                (grad,) = torch.autograd.grad(self.energy(y, image).sum(), y)
            return grad

    return _Autograd()


def coop_graphs(model: nn.Module, size: int, data_images: torch.Tensor | None = None, *,
                split_energy: bool = False) -> list[GraphDef]:
    """The five required coop graphs (plus their references) for input side ``size``, and with
    ``split_energy`` the two of the split energy gradient."""
    generator, energy = model.generator.eval(), model.energy.eval()
    latent_dim = int(model.latent_dim)
    with torch.no_grad():
        probe = generator.encode(torch.zeros(1, IMAGE_CHANNELS, size, size))
    feat_shapes = [tuple(f.shape[1:]) for f in probe]
    feat_names = tuple(f"feat{i}" for i in range(len(probe)))

    def image(b: int, g: torch.Generator) -> torch.Tensor:
        return torch.randn(b, IMAGE_CHANNELS, size, size, generator=g)  # ~ a normalised image

    def latent(b: int, g: torch.Generator) -> torch.Tensor:
        return torch.randn(b, latent_dim, generator=g)

    def saliency(b: int, g: torch.Generator) -> torch.Tensor:
        return 3 * torch.randn(b, 1, size, size, generator=g)  # logits, mostly away from 0

    def feats(b: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return tuple(torch.randn(b, *shape, generator=g) for shape in feat_shapes)

    structure = energy_structure(energy)
    grad = EnergyGrad(structure, IMAGE_CHANNELS, size).eval()
    graphs = [
        GraphDef("encoder", _Encoder(generator), ("image",), feat_names, lambda b, g: (image(b, g),)),
        GraphDef("latent_decoder", _LatentDecoder(generator), (*feat_names, "latent"), ("logits",),
                 lambda b, g: (*feats(b, g), latent(b, g))),
        GraphDef("generator", _Generator(generator), ("image", "latent"), ("logits",),
                 lambda b, g: (image(b, g), latent(b, g))),
        GraphDef("energy", energy, ("saliency", "image"), ("energy",), lambda b, g: (saliency(b, g), image(b, g))),
        GraphDef("energy_grad", grad, ("saliency", "image"), ("grad",), lambda b, g: (saliency(b, g), image(b, g)),
                 reference=energy_autograd(energy), gradient_of=GradientOf("energy", structure)),
    ]
    if split_energy:
        graphs += [
            GraphDef("energy_image", EnergyImageTerm(grad).eval(), ("image",), ("image_term",), lambda b, g: (image(b, g),)),
            GraphDef("energy_grad_step", EnergyGradStep(grad).eval(), ("saliency", "image_term"), ("grad",),
                     lambda b, g: (saliency(b, g), image(b, g)), reference=energy_autograd(energy),
                     gradient_of=GradientOf("energy", structure), feeds_from=lambda y, x: (y, grad.image_term(x))),
        ]
    if data_images is not None:
        _attach_data_inputs(graphs, generator, latent_dim, data_images)
    return graphs


def _attach_data_inputs(graphs: list[GraphDef], generator: nn.Module, latent_dim: int, x: torch.Tensor) -> None:
    """Realistic inputs: real images, their encoder features, and the generator's own maps."""
    g = torch.Generator().manual_seed(1)
    h = torch.randn(x.shape[0], latent_dim, generator=g)
    with torch.no_grad():
        feats = tuple(generator.encode(x))
        logits = generator.decode(list(feats), h)
    by_name = {
        "encoder": (x,),
        "latent_decoder": (*feats, h),
        "generator": (x, h),
        "energy": (logits, x),
        "energy_grad": (logits, x),
        "energy_image": (x,),
        "energy_grad_step": (logits, x),  # its inputs; fed (logits, image_term) (GraphDef.feeds_from)
    }
    for graph in graphs:
        graph.data_inputs = by_name[graph.name]


def coop_settings(model: nn.Module, train_config: dict) -> dict:
    """The manifest's ``coop`` block: latent dim and the Langevin defaults used in training."""
    # train-coop records its CoopSettings under train_config["coop"] (energy_step = δ_U, langevin_steps = K).
    recorded = train_config.get("coop") if isinstance(train_config.get("coop"), dict) else {}

    def pick(*keys: str, default: float) -> float:
        for key in keys:
            if recorded.get(key) is not None:
                return recorded[key]
        return default

    return {
        "latent_dim": int(model.latent_dim),
        # Paper defaults (K = 5, δ = 0.4) unless the checkpoint's training recorded its own.
        "langevin_step": float(pick("energy_step", default=0.4)),
        "langevin_steps": int(pick("langevin_steps", default=5)),
        "samples": int(pick("samples", default=10)),
        "map_space": "logit",
    }
