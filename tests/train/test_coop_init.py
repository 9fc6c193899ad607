"""train-coop --init: a new run starts from another run's weights (pre-training), with a fresh schedule."""

from __future__ import annotations

from pathlib import Path

import torch
from click.testing import CliRunner

from salkit.train.coop.cli import main
from salkit.train.engine.checkpoint import load_checkpoint

BASE = ["--preset", "tiny", "--batch-size", "4", "--grid-every", "0", "--no-progress", "--threads", "1",
        "--langevin-steps", "1"]


def _cli(*args: object):
    return CliRunner().invoke(main, [*map(str, args), *BASE])


def test_init_copies_weights_and_restarts_the_schedule(tmp_path: Path, synthetic_dataset: Path) -> None:
    first = _cli("--data", synthetic_dataset, "--out", tmp_path / "pre", "--size", "64", "--max-steps", "2")
    assert first.exit_code == 0, first.output
    pre = load_checkpoint(tmp_path / "pre" / "last.pt")
    # zero learning rates: the new run's weights stay the --init weights, whatever the seed
    second = _cli("--data", synthetic_dataset, "--out", tmp_path / "fine", "--size", "64", "--max-steps", "1",
                  "--init", tmp_path / "pre" / "last.pt", "--seed", "7", "--lr-gen", "1e-30", "--lr-energy", "1e-30")
    assert second.exit_code == 0, second.output
    fine = load_checkpoint(tmp_path / "fine" / "last.pt")
    assert fine["step"] == 1  # a fresh schedule, not the pre-training's step count
    for key, value in pre["state_dict"].items():
        if value.dtype.is_floating_point and "running" not in key:  # batch-norm statistics move without the optimiser
            assert torch.allclose(fine["state_dict"][key], value, atol=1e-6), key
    fresh = _cli("--data", synthetic_dataset, "--out", tmp_path / "fresh", "--size", "64", "--max-steps", "1", "--seed", "7",
                 "--lr-gen", "1e-30", "--lr-energy", "1e-30")
    assert fresh.exit_code == 0
    fresh_state = load_checkpoint(tmp_path / "fresh" / "last.pt")["state_dict"]
    assert any(not torch.allclose(fresh_state[k], v) for k, v in pre["state_dict"].items() if v.dtype.is_floating_point)

    other = _cli("--data", synthetic_dataset, "--out", tmp_path / "o", "--size", "32", "--init", tmp_path / "pre" / "last.pt")
    assert other.exit_code == 2 and "another architecture" in other.output
    both = _cli("--data", synthetic_dataset, "--out", tmp_path / "b", "--size", "64", "--init", tmp_path / "pre" / "last.pt",
                "--resume", tmp_path / "pre" / "last.pt")
    assert both.exit_code == 2 and "pass one of them" in both.output


def test_init_from_g_of_x_starts_g_of_x_h_as_g_of_x(tmp_path: Path, synthetic_dataset: Path) -> None:
    """G(X) never saw h ≠ 0, so its weights on h are untrained: a coop run started from it zeroes them,
    and its generator maps the same for every h at the start (a coop checkpoint's are kept)."""
    from salkit.train.coop.model import coop

    gx = _cli("--data", synthetic_dataset, "--out", tmp_path / "gx", "--size", "64", "--max-steps", "1",
              "--generator-only", "deterministic")
    assert gx.exit_code == 0, gx.output
    before = load_checkpoint(tmp_path / "gx" / "last.pt")["state_dict"]["generator.latent_conv.weight"]
    d = coop("tiny", backbone_weights=None).generator.latent_dim
    assert before[:, -d:].abs().min() > 0  # random, untrained

    from salkit.train.coop.cli import _load_init_weights
    from salkit.train.engine.checkpoint import build_model

    model = build_model(load_checkpoint(tmp_path / "gx" / "last.pt")).eval()
    _load_init_weights(model, tmp_path / "gx" / "last.pt")
    weight = model.generator.latent_conv.weight
    assert torch.equal(weight[:, -d:], torch.zeros_like(weight[:, -d:]))
    torch.testing.assert_close(weight[:, :-d], before[:, :-d])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = [model.generator(x, torch.randn(2, d) * 3) for _ in range(2)]
    torch.testing.assert_close(maps[0], maps[1])

    coop_run = _cli("--data", synthetic_dataset, "--out", tmp_path / "coop", "--size", "64", "--max-steps", "1")
    assert coop_run.exit_code == 0
    other = build_model(load_checkpoint(tmp_path / "coop" / "last.pt"))
    _load_init_weights(other, tmp_path / "coop" / "last.pt")
    assert other.generator.latent_conv.weight[:, -d:].abs().min() > 0  # a cooperative run's h weights are trained ones
