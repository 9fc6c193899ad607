"""Cooperative model: registry, shapes, the EBM spec, shared encode, local backbone weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from salkit.base.errors import SalkitError
from salkit.train.coop.energy import CoopEnergy
from salkit.train.engine.backbone import build_backbone
from salkit.train.engine.registry import create_model, get_entry, list_models

torch.set_num_threads(2)


def test_registry_lists_coop_and_none_keeps_defaults() -> None:
    assert "coop" in list_models() and get_entry("coop").kind == "coop"
    model = create_model("coop", preset="tiny", latent_dim=None, image_size=None, decoder_width=12)
    assert model.config["latent_dim"] == 8 and model.config["image_size"] == 64
    assert model.config["decoder_width"] == 12
    rebuilt = create_model("coop", preset="tiny", **model.config)
    assert rebuilt.config == model.config
    with pytest.raises(SalkitError, match="nope"):
        create_model("nope")
    with pytest.raises(SalkitError, match="preset"):
        create_model("coop", preset="huge")


@pytest.mark.parametrize("backbone", ["tiny", "resnet18"])
def test_generator_and_energy_shapes(backbone: str) -> None:
    model = create_model("coop", preset="tiny", backbone=backbone, image_size=64).eval()
    x, h = torch.randn(3, 3, 64, 64), torch.randn(3, 8)
    with torch.no_grad():
        logits = model.generator(x, h)
        assert logits.shape == (3, 1, 64, 64)
        assert model.energy(logits, x).shape == (3,)
        feats = model.generator.encode(x)
    assert len(feats) == 4 and [f.shape[-1] for f in feats] == [16, 8, 4, 2]


def test_latent_changes_output_and_shared_encode_equals_whole_generator() -> None:
    torch.manual_seed(0)
    gen = create_model("coop", preset="tiny").generator.eval()
    x = torch.randn(2, 3, 64, 64)
    latents = torch.randn(5, 2, 8)  # (N, B, d)
    with torch.no_grad():
        shared = gen.decode_samples(gen.encode(x), latents)  # one encode for 5 samples
        whole = torch.stack([gen(x, latents[n]) for n in range(5)])
    assert shared.shape == (5, 2, 1, 64, 64)
    torch.testing.assert_close(shared, whole, atol=1e-5, rtol=0)
    assert (whole[0] - whole[1]).abs().max() > 1e-4  # h really enters the decoder


@pytest.mark.parametrize("size", [(32, 32), (30, 34)])  # the 2× step of every level, and any other size
def test_fusion_block_equals_midas_order_conv_after_upsampling(size: tuple[int, int]) -> None:
    """The block applies its 1×1 conv before the upsampling; MiDaS's order (upsample, then conv)
    is the reference, written here with the block's own weights, on inputs where the conv matters."""
    from salkit.train.coop.generator import FeatureFusionBlock

    torch.manual_seed(0)
    block = FeatureFusionBlock(8).double().eval()
    with torch.no_grad():
        block.out_conv.bias.normal_()  # a non-zero bias: it must pass through the interpolation
    x, skip = torch.randn(3, 8, 16, 16, dtype=torch.float64), torch.randn(3, 8, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        got = block(x, block.prepare_skip(skip), size)
        up = nn.functional.interpolate(block.unit(x + block.skip_unit(skip)), size=size, mode="bilinear", align_corners=True)
        expected = nn.functional.conv2d(up, block.out_conv.weight, block.out_conv.bias)
    assert got.shape == (3, 8, *size)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    assert (expected - up).abs().max() > 0.1  # the conv is not close to the identity


def test_energy_spec_layer_widths_and_param_count_at_352() -> None:
    energy = CoopEnergy(image_size=352, width=1.0)
    assert isinstance(energy.net, nn.Sequential)
    convs = [m for m in energy.net if isinstance(m, nn.Conv2d)]
    spec = [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs]
    assert spec == [(32, 3, 1), (64, 4, 2), (128, 4, 2), (256, 4, 2), (1, 4, 1)]
    assert convs[0].in_channels == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in energy.net) == 4
    fc = energy.net[-1]
    assert isinstance(fc, nn.Linear) and fc.in_features == 41 * 41 and fc.out_features == 100
    n_params = sum(p.numel() for p in energy.parameters())
    assert 0.8e6 < n_params < 1.2e6, n_params  # "about 1 M" as the paper says
    assert [c.out_channels for c in CoopEnergy(352, 2.0).net if isinstance(c, nn.Conv2d)][:4] == [64, 128, 256, 512]
    # Only listed layer types, so the export can write its vector–Jacobian module.
    allowed = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.Flatten, nn.Linear)
    assert all(isinstance(m, allowed) for m in energy.net)


def test_energy_is_minus_sum_of_fc_outputs_on_sigmoid_concat() -> None:
    energy = CoopEnergy(image_size=64, width=0.25).eval()
    y, x = torch.randn(2, 1, 64, 64), torch.randn(2, 3, 64, 64)
    expected = -energy.net(torch.cat([x, torch.sigmoid(y)], 1)).sum(1)
    torch.testing.assert_close(energy(y, x), expected)


def test_backbone_loads_local_torchvision_weights_and_refuses_bad_files(tmp_path) -> None:
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    trunk = build_backbone("resnet18", path)
    torch.testing.assert_close(trunk.stem[0].weight, reference.conv1.weight)
    torch.testing.assert_close(trunk.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    with pytest.raises(SalkitError, match="does not exist"):
        build_backbone("resnet18", tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SalkitError, match="junk.pth"):
        build_backbone("resnet18", tmp_path / "junk.pth")
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(SalkitError, match="do not fit"):
        build_backbone("resnet18", tmp_path / "r34.pth")
