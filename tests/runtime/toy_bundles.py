"""Small bundles for the runtime tests, built from toy torch modules that follow the I/O contract.

The cooperative toy has a two-level encoder, a latent-conditioned decoder and an energy with a
closed-form gradient (exported as ``energy_grad``); the torch reference in the tests takes the
gradient by autograd instead, so the exported gradient is checked independently. The QE-FPN toy
has a contractive ``f``. Everything is 32×32 and exports in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from salkit.export.onnx_io import export_module, io_specs
from salkit.runtime.bundle import GraphSpec, Manifest, TensorSpec, sha256_file

SIZE = 32
LATENT = 3
STATE = 16
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class ToyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f0 = torch.relu(self.c1(image))  # (B, 4, S/2, S/2)
        return f0, torch.relu(self.c2(f0))  # (B, 6, S/4, S/4)


class ToyDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(LATENT, 6)
        self.c3 = nn.Conv2d(6, 4, 3, padding=1)
        self.c4 = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        h = feat1 + 2.0 * self.lin(latent)[:, :, None, None]  # latent enters at the bottleneck
        up = F.interpolate(torch.relu(self.c3(h)), scale_factor=2.0, mode="nearest") + feat0
        return 3.0 * F.interpolate(self.c4(up), scale_factor=2.0, mode="bilinear", align_corners=False)


class ToyGenerator(nn.Module):
    def __init__(self, encoder: ToyEncoder, decoder: ToyDecoder) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, image: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(*self.encoder(image), latent)


class ToyEnergy(nn.Module):
    """U(y, x) = Σ (w(x)·s + b·s²), s = sigmoid(y): U sees sigmoid(Y) and X, as the contract says."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Conv2d(3, 1, 3, padding=1)
        self.b = nn.Parameter(torch.tensor(-1.5))

    def forward(self, saliency: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(saliency)
        return (self.w(image) * s + self.b * s * s).flatten(1).sum(1)  # (B,)


class ToyEnergyGrad(nn.Module):
    """∂U/∂y in closed form: (w(x) + 2b·s)·s·(1 − s)."""

    def __init__(self, energy: ToyEnergy) -> None:
        super().__init__()
        self.energy = energy

    def forward(self, saliency: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(saliency)
        return (self.energy.w(image) + 2.0 * self.energy.b * s) * s * (1.0 - s)


class ToyCoop(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.encoder, self.decoder, self.energy = ToyEncoder(), ToyDecoder(), ToyEnergy()
        self.generator = ToyGenerator(self.encoder, self.decoder)


class ToyQEFPN(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 4, stride=4)
        self.inj = nn.Linear(16, STATE)
        w = torch.randn(STATE, STATE)
        self.register_buffer("w", 0.6 * w / torch.linalg.matrix_norm(w, ord=2))  # contraction: ‖W‖₂ = 0.6
        self.out = nn.Linear(STATE, 64)

    def inject(self, image: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(torch.relu(self.conv(image)), 2).flatten(1)  # (B, 4·2·2)
        return self.inj(pooled)  # (B, D)

    def f(self, z: torch.Tensor, injection: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ self.w.T + injection)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        coarse = self.out(z).reshape(-1, 1, 8, 8)  # (B, 64) → (B, 1, 8, 8)
        return 4.0 * F.interpolate(coarse, scale_factor=4.0, mode="bilinear", align_corners=False)


class _Call(nn.Module):
    """``model.<method>`` as a module (the model stays a submodule, so its weights export)."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(*args)


def _graph(directory: Path, name: str, module: nn.Module, args: tuple, ins: list[str], outs: list[str]) -> GraphSpec:
    path = directory / f"{name}.onnx"
    model = export_module(module, args, path, input_names=ins, output_names=outs)
    specs_in, specs_out = io_specs(model)
    return GraphSpec(
        file=path.name,
        sha256=sha256_file(path),
        inputs=tuple(TensorSpec.from_json(s) for s in specs_in),
        outputs=tuple(TensorSpec.from_json(s) for s in specs_out),
    )


def build_coop_bundle(directory: Path, model: ToyCoop, *, step: float = 0.4, steps: int = 3, samples: int = 4) -> Manifest:
    directory.mkdir(parents=True, exist_ok=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    h = torch.randn(2, LATENT)
    y = torch.randn(2, 1, SIZE, SIZE)
    feats = model.encoder(x)
    grad = ToyEnergyGrad(model.energy)
    graphs = {
        "encoder": _graph(directory, "encoder", model.encoder, (x,), ["image"], ["feat0", "feat1"]),
        "latent_decoder": _graph(directory, "latent_decoder", model.decoder, (*feats, h), ["feat0", "feat1", "latent"], ["logits"]),
        "generator": _graph(directory, "generator", model.generator, (x, h), ["image", "latent"], ["logits"]),
        "energy": _graph(directory, "energy", model.energy, (y, x), ["saliency", "image"], ["energy"]),
        "energy_grad": _graph(directory, "energy_grad", grad, (y, x), ["saliency", "image"], ["grad"]),
    }
    manifest = Manifest(
        model_kind="coop", model_name="toy_coop", input_size=SIZE, mean=MEAN, std=STD, precision="fp32",
        batch={"min": 1, "opt": 4, "max": 8}, graphs=graphs,
        coop={"latent_dim": LATENT, "langevin_step": step, "langevin_steps": steps, "samples": samples, "map_space": "logit"},
    )
    manifest.write(directory)
    return manifest


def build_qefpn_bundle(directory: Path, model: ToyQEFPN, *, iterations: int = 12, memory: int = 8, tol: float = 1e-4) -> Manifest:
    directory.mkdir(parents=True, exist_ok=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    z = torch.randn(2, STATE)
    graphs = {
        "encoder": _graph(directory, "encoder", _Call(model, "inject"), (x,), ["image"], ["injection"]),
        "f": _graph(directory, "f", _Call(model, "f"), (z, z), ["z", "injection"], ["f_z"]),
        "decoder": _graph(directory, "decoder", _Call(model, "decode"), (z,), ["z"], ["logits"]),
    }
    manifest = Manifest(
        model_kind="qefpn", model_name="toy_qefpn", input_size=SIZE, mean=MEAN, std=STD, precision="fp32",
        batch={"min": 1, "opt": 4, "max": 8}, graphs=graphs,
        qefpn={"state_dim": STATE, "broyden_iterations": iterations, "broyden_memory": memory, "broyden_tol": tol, "stop_mode": "rel"},
    )
    manifest.write(directory)
    return manifest
