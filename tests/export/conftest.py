"""Export-area fixtures: an untrained tiny coop checkpoint (fast, independent of training)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def untrained_coop_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from salkit.train.engine.checkpoint import make_checkpoint, save_checkpoint
    from salkit.train.engine.registry import create_model

    torch.manual_seed(0)
    model = create_model("coop", preset="tiny", image_size=64)
    path = tmp_path_factory.mktemp("ckpt") / "coop_untrained.pt"
    save_checkpoint(make_checkpoint(model, name="coop", kind="coop", train_config={"coop": {"energy_step": 0.25}}), path)
    return path
