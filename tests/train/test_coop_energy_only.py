"""train-coop --init CKPT --energy-only: U alone learns to refine the frozen generator's and degraded maps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from salkit.base.errors import SalkitError
from salkit.train.coop.cli import main
from salkit.train.coop.energy_losses import corrupt_masks
from salkit.train.coop.energy_only import START_KINDS, parse_starts, restyle, to_logits
from salkit.train.coop.langevin import revise_saliency
from salkit.train.coop.predictor import load_coop
from salkit.train.data.dataset import SaliencyDataset
from salkit.train.engine.checkpoint import load_checkpoint

BASE = ["--preset", "tiny", "--size", "32", "--batch-size", "4", "--grid-every", "0", "--no-progress", "--threads", "1"]


def _cli(*args: object):
    return CliRunner().invoke(main, [*map(str, args), *BASE])


@pytest.fixture(scope="module")
def data(synthetic_dataset_factory) -> Path:
    return synthetic_dataset_factory(8, 32, 5)


def _descent_bce(ckpt: Path, data: Path) -> tuple[float, float, float]:
    """(BCE of the degraded starts, BCE after the checkpoint's K-step noise-free descent, mean |Δp|)."""
    model = load_coop(ckpt)
    settings = load_checkpoint(ckpt)["train_config"]["coop"]
    items = [SaliencyDataset(data, 32, augment=False)[i] for i in range(8)]
    x = torch.stack([it["image"] for it in items])
    mask = torch.stack([it["mask"] for it in items])
    torch.manual_seed(11)
    starts = to_logits(0.05 + 0.9 * corrupt_masks(mask))
    final = revise_saliency(model.energy, starts, x, settings["langevin_steps"], settings["energy_step"], noise=False).value
    moved = float((torch.sigmoid(final) - torch.sigmoid(starts)).abs().mean())
    return (float(F.binary_cross_entropy_with_logits(starts, mask)), float(F.binary_cross_entropy_with_logits(final, mask)),
            moved)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    """base/last.pt (2 cooperative steps) and fine/last.pt (40 energy-only steps from it, δ = 1)."""
    tmp_path = tmp_path_factory.mktemp("energy_only")
    base = _cli("--data", data, "--out", tmp_path / "base", "--max-steps", "2")
    assert base.exit_code == 0, base.output
    fine = _cli("--data", data, "--out", tmp_path / "fine", "--init", tmp_path / "base" / "last.pt", "--energy-only",
                "--epochs", "20", "--lr-energy", "1e-2", "--energy-step", "1.0", "--descent-starts", "degraded,generator",
                "--descent-samples", "2")
    assert fine.exit_code == 0, fine.output
    return tmp_path


def test_energy_only_fine_tune_learns_to_repair_maps_and_leaves_the_generator(runs: Path, data: Path) -> None:
    tmp_path = runs
    before_start, before_final, before_moved = _descent_bce(tmp_path / "base" / "last.pt", data)
    after_start, after_final, after_moved = _descent_bce(tmp_path / "fine" / "last.pt", data)
    assert before_start == pytest.approx(after_start)  # the same degraded starts
    assert before_moved < 0.005 < after_moved  # the untrained-for-descent energy leaves maps as they are
    assert after_final < before_final - 0.05  # the fine-tuned descent heads towards the truth

    old, new = load_checkpoint(tmp_path / "base" / "last.pt"), load_checkpoint(tmp_path / "fine" / "last.pt")
    for key, value in old["state_dict"].items():
        if key.startswith("generator."):
            assert torch.equal(new["state_dict"][key], value), key  # frozen, running statistics included
        elif key.startswith("energy.") and "running" in key:
            assert torch.equal(new["state_dict"][key], value), key  # U in eval mode: the exported function
    assert any(not torch.equal(new["state_dict"][k], v) for k, v in old["state_dict"].items() if k.startswith("energy.net.0"))
    coop = new["train_config"]["coop"]
    assert coop["energy_only"] and coop["energy_step"] == 1.0 and coop["descent_starts"] == "degraded,generator"
    assert set(new["optimizers"]) == {"energy"}


def test_energy_only_needs_a_trained_model_and_known_starts(tmp_path: Path, data: Path) -> None:
    alone = _cli("--data", data, "--out", tmp_path / "a", "--energy-only")
    assert alone.exit_code == 2 and "--init" in alone.output
    bad = _cli("--data", data, "--out", tmp_path / "b", "--energy-only", "--init", tmp_path / "x.pt", "--descent-starts",
               "generator,qefpn")
    assert bad.exit_code == 2 and "--descent-starts" in bad.output
    with pytest.raises(SalkitError):
        parse_starts("")
    assert parse_starts(" generator , restyled") == ("generator", "restyled")
    assert set(START_KINDS) == {"generator", "degraded", "restyled"}


def test_restyle_keeps_the_order_of_pixels_but_changes_calibration() -> None:
    torch.manual_seed(0)
    p = torch.rand(3, 1, 32, 32)
    out = restyle(p)
    assert out.shape == p.shape and float(out.min()) > 0 and float(out.max()) < 1
    assert float((out - p).abs().mean()) > 0.01
    flat = torch.full((1, 1, 32, 32), 0.5)
    assert torch.allclose(restyle(flat), flat, atol=1e-6)  # logit 0 stays 0 at any temperature, blur keeps it


def test_the_fine_tuned_checkpoint_exports_and_the_runtime_refines_with_its_energy(
        runs: Path, data: Path, tmp_path: Path) -> None:
    """export-trt's defaults on the energy-only checkpoint; sal-runtime's refine then runs the new
    energy with the recorded δ and K and gives the torch reference's maps."""
    import numpy as np

    from salkit.export.bundle_writer import ExportOptions, export_bundle
    from salkit.runtime import Predictor
    from salkit.train.coop.predictor import refine_tensor

    export_bundle(ExportOptions(ckpt=runs / "fine" / "last.pt", out=tmp_path / "bundle", build_engines=False))
    items = [SaliencyDataset(data, 32, augment=False)[i] for i in range(4)]
    x = torch.stack([it["image"] for it in items])
    torch.manual_seed(2)
    maps = 0.05 + 0.9 * corrupt_masks(torch.stack([it["mask"] for it in items]))
    expected = refine_tensor(load_coop(runs / "fine" / "last.pt"), x, maps, 5, 1.0).numpy()
    with Predictor.from_bundle(tmp_path / "bundle", backend="ort-cpu", threads=1) as predictor:
        assert predictor.manifest.coop["langevin_step"] == 1.0 and predictor.manifest.coop["langevin_steps"] == 5
        got = predictor.refine_tensor(x.numpy(), maps.numpy())
    assert float(np.abs(got - maps.numpy()).mean()) > 0.005  # the new energy moves the maps
    np.testing.assert_allclose(got, expected, atol=1e-4)
