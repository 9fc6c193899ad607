"""`train-coop --generator-only`: Table 2's baselines train the generator alone, as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from salkit.train.coop.cli import main
from salkit.train.coop.trainer import CoopTrainer, mask_to_logits
from salkit.train.engine.checkpoint import load_checkpoint
from salkit.train.engine.registry import create_model

ARGS = ["--preset", "tiny", "--size", "64", "--batch-size", "4", "--seed", "3", "--max-steps", "2", "--grid-every", "0",
        "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def data(synthetic_dataset_factory) -> Path:
    return synthetic_dataset_factory(8, 64, 0)


@pytest.mark.parametrize("mode", ["deterministic", "latent"])
def test_only_the_generator_learns_with_the_documented_latent_and_target(
        tmp_path: Path, data: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]] = []
    update = CoopTrainer._update_generator

    def recording(self, feats, h, y_tilde, mask, **kw):
        calls.append((h.detach().clone(), None if y_tilde is None else y_tilde.detach().clone(), mask.clone()))
        return update(self, feats, h, y_tilde, mask, **kw)

    monkeypatch.setattr(CoopTrainer, "_update_generator", recording)
    result = CliRunner().invoke(main, ["--data", str(data), "--out", str(tmp_path / "run"), *ARGS, "--generator-only", mode])
    assert result.exit_code == 0, result.output
    assert len(calls) == 2
    for h, y_tilde, mask in calls:
        if mode == "deterministic":
            assert torch.count_nonzero(h) == 0 and y_tilde is None  # G(X): h = 0, the BCE alone
        else:
            assert h.abs().sum() > 0 and torch.equal(y_tilde, mask_to_logits(mask))  # h inferred from the ground truth

    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    torch.manual_seed(3)  # the initial weights of the same run
    fresh = create_model("coop", preset="tiny", image_size=64).state_dict()
    trained = ckpt["state_dict"]
    energy = [k for k in fresh if k.startswith("energy.")]
    generator = [k for k in fresh if k.startswith("generator.") and fresh[k].is_floating_point()]
    assert energy and all(torch.equal(trained[k], fresh[k]) for k in energy)  # the energy is never touched
    assert any(not torch.equal(trained[k], fresh[k]) for k in generator)
    assert ckpt["train_config"]["coop"]["generator_only"] == mode


def test_generator_only_refuses_scribbles(tmp_path: Path, data: Path) -> None:
    result = CliRunner().invoke(main, ["--data", str(data), "--out", str(tmp_path / "run"), *ARGS,
                                       "--generator-only", "latent", "--scribble"])
    assert result.exit_code == 2 and "--generator-only" in result.output and "--scribble" in result.output


def test_iou_weight_adds_the_soft_iou_to_the_generators_bce(tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--iou-weight w: the generator's supervised term is BCE + w · (1 − (Σ p·m + 1)/(Σ (p + m − p·m) + 1)),
    recomputed here in NumPy from the logits the step saw."""
    import numpy as np

    seen: list[tuple[np.ndarray, np.ndarray, float]] = []
    update = CoopTrainer._update_generator

    def recording(self, feats, h, y_tilde, mask, **kw):
        with torch.no_grad():
            logits = self.model.generator.decode(feats, h).double().numpy()
        regression, ce, lam = update(self, feats, h, y_tilde, mask, **kw)
        seen.append((logits, mask.double().numpy(), ce))
        return regression, ce, lam

    monkeypatch.setattr(CoopTrainer, "_update_generator", recording)
    result = CliRunner().invoke(main, ["--data", str(data), "--out", str(tmp_path / "run"), *ARGS, "--max-steps", "1",
                                       "--generator-only", "deterministic", "--iou-weight", "0.5"])
    assert result.exit_code == 0, result.output
    (logits, mask, ce), = seen
    p = 1.0 / (1.0 + np.exp(-logits))
    bce = np.mean(np.maximum(logits, 0) - logits * mask + np.log1p(np.exp(-np.abs(logits))))
    iou = np.mean([1 - ((p[b] * mask[b]).sum() + 1) / ((p[b] + mask[b] - p[b] * mask[b]).sum() + 1) for b in range(len(p))])
    assert iou > 0.05
    assert ce == pytest.approx(bce + 0.5 * iou, rel=1e-4)
