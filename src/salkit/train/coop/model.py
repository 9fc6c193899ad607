"""The cooperative model (`coop`): generator G(X, h) and energy U(Y, X) in one module.

Presets: ``paper`` (resnet50, d = 8, decoder width 64, energy width 1.0 at 352²), ``lite`` (ImageNet
EfficientNet-Lite0, decoder width 32, energy width 0.5 at 256²: real photographs on a CPU) and ``tiny``
(narrow plain backbone, decoder width 16, energy width 0.25 at 64²) for tests and CPU demos.
Explicit options override the preset; ``None`` keeps it.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from salkit.base.errors import SalkitError
from salkit.train.coop.energy import CoopEnergy
from salkit.train.coop.generator import CoopGenerator
from salkit.train.engine.registry import register_model

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"backbone": "resnet50", "latent_dim": 8, "decoder_width": 64, "energy_width": 1.0, "image_size": 352},
    "tiny": {"backbone": "tiny", "latent_dim": 8, "decoder_width": 16, "energy_width": 0.25, "image_size": 64},
    # Real photographs on a CPU: ImageNet-pretrained EfficientNet-Lite0 (experiments/real_trials.py).
    "lite": {"backbone": "efficientnet-lite0", "latent_dim": 8, "decoder_width": 32, "energy_width": 0.5, "image_size": 256},
}


class CoopModel(nn.Module):
    kind = "coop"

    def __init__(
        self,
        backbone: str,
        latent_dim: int,
        decoder_width: int,
        energy_width: float,
        image_size: int,
        backbone_weights: str | None = None,
    ) -> None:
        super().__init__()
        if image_size % 32 != 0:
            raise SalkitError(f"image size must be a multiple of 32, got {image_size}")
        self.generator = CoopGenerator(backbone, latent_dim, decoder_width, backbone_weights)
        self.energy = CoopEnergy(image_size, energy_width)
        # backbone_weights only initialises; the checkpoint carries the weights from then on.
        self.config = {
            "backbone": backbone,
            "latent_dim": latent_dim,
            "decoder_width": decoder_width,
            "energy_width": energy_width,
            "image_size": image_size,
        }

    @property
    def latent_dim(self) -> int:
        return self.config["latent_dim"]

    @property
    def image_size(self) -> int:
        return self.config["image_size"]


@register_model("coop", kind="coop")
def coop(preset: str = "paper", **options: Any) -> CoopModel:
    if preset not in PRESETS:
        raise SalkitError(f"unknown coop preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = set(options) - set(PRESETS[preset]) - {"backbone_weights"}
    if unknown:
        raise SalkitError(f"unknown coop option(s) {sorted(unknown)}")
    config = {**PRESETS[preset], **options}
    return CoopModel(**config)
