"""--backbone-weights CHECKPOINT: a new model starts from the trunk another salkit job trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from salkit.base.errors import SalkitError
from salkit.train.engine.backbone import build_backbone
from salkit.train.engine.checkpoint import load_checkpoint
from salkit.train.qefpn.cli import main as train_qefpn


def _trunk(ckpt: Path, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in load_checkpoint(ckpt)["state_dict"].items() if k.startswith(prefix)}


def test_a_qefpn_starts_from_a_coop_generators_trained_trunk(tmp_path: Path, tiny_coop_checkpoint: Path,
                                                             synthetic_dataset: Path) -> None:
    trained = _trunk(tiny_coop_checkpoint, "generator.backbone.")
    fresh = build_backbone("tiny").state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in trained.items())  # training moved it: the check can fail
    loaded = build_backbone("tiny", tiny_coop_checkpoint).state_dict()
    assert loaded.keys() == trained.keys() and all(torch.equal(loaded[k], v) for k, v in trained.items())
    # Through the trainer CLI: a QE-FPN whose first step has not run yet carries exactly that trunk.
    out = tmp_path / "q"
    result = CliRunner().invoke(train_qefpn, ["--data", str(synthetic_dataset), "--out", str(out), "--preset", "tiny",
                                              "--backbone-weights", str(tiny_coop_checkpoint), "--max-steps", "0",
                                              "--grid-every", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    encoder = _trunk(out / "last.pt", "encoder.")
    assert all(torch.equal(encoder[k], v) for k, v in trained.items())
    # And back: a QE-FPN checkpoint's encoder is a trunk too.
    again = build_backbone("tiny", out / "last.pt").state_dict()
    assert all(torch.equal(again[k], v) for k, v in trained.items())


def test_a_checkpoint_of_another_backbone_is_refused_by_name(tiny_coop_checkpoint: Path) -> None:
    with pytest.raises(SalkitError, match="hold a tiny trunk, not resnet18"):
        build_backbone("resnet18", tiny_coop_checkpoint)
