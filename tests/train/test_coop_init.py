"""train-coop --init: a new run starts from another run's weights (pre-training), with a fresh schedule."""

from __future__ import annotations

from pathlib import Path

import torch
from click.testing import CliRunner

from salkit.train.coop.cli import main
from salkit.train.engine.checkpoint import load_checkpoint

BASE = ["--preset", "tiny", "--batch-size", "4", "--grid-every", "0", "--no-progress", "--threads", "1",
        "--langevin-steps", "1"]


def _cli(*args: object):  # type: ignore[no-untyped-def]
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
