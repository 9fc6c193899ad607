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

    def recording(self, feats, h, y_tilde, mask, **kw):  # type: ignore[no-untyped-def]
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
