"""`train-coop` end to end: bad input, exact resume after kill -9, two-process DDP on CPU."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from salkit.train.coop.cli import main
from salkit.train.engine.checkpoint import load_checkpoint

BASE = ["--preset", "tiny", "--batch-size", "4", "--seed", "3", "--grid-every", "0", "--no-progress", "--threads", "1"]


def _cli(*args: str):
    return CliRunner().invoke(main, [*map(str, args)])


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


@pytest.fixture(scope="module")
def data(synthetic_dataset_factory) -> Path:
    return synthetic_dataset_factory(12, 64, 0)  # 3 steps per epoch at batch 4


def test_missing_and_empty_data_dirs(tmp_path: Path) -> None:
    result = _cli("--data", tmp_path / "nope", "--out", tmp_path / "o", *BASE)
    assert result.exit_code == 2 and "nope" in result.output
    (tmp_path / "empty" / "img").mkdir(parents=True)
    (tmp_path / "empty" / "gt").mkdir()
    result = _cli("--data", tmp_path / "empty", "--out", tmp_path / "o", *BASE)
    assert result.exit_code == 2 and "empty" in result.output
    assert not (tmp_path / "o" / "last.pt").exists()


def test_size_mismatch_and_unreadable_files(tmp_path: Path, data: Path) -> None:
    from PIL import Image

    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    mask = sorted((bad / "gt").iterdir())[0]
    Image.open(mask).resize((32, 32)).save(mask)
    result = _cli("--data", bad, "--out", tmp_path / "o", *BASE)
    assert result.exit_code == 2 and mask.name in result.output and "differ" in result.output
    Image.open(sorted((data / "gt").iterdir())[0]).save(mask)
    image = sorted((bad / "img").iterdir())[1]
    image.write_bytes(b"not a jpeg at all")
    result = _cli("--data", bad, "--out", tmp_path / "o", *BASE)
    assert result.exit_code == 2 and image.name in result.output


def test_bad_options_and_wrong_checkpoints(tmp_path: Path, data: Path, tiny_coop_checkpoint: Path) -> None:
    result = _cli("--data", data, "--out", tmp_path / "o", *BASE, "--size", "50")
    assert result.exit_code == 2 and "multiple of 32" in result.output
    result = _cli("--data", data, "--out", tmp_path / "o", *BASE, "--energy-step", "-1")
    assert result.exit_code == 2 and "--energy-step" in result.output
    ckpt = load_checkpoint(tiny_coop_checkpoint)
    ckpt["model"]["kind"] = "qefpn"
    torch.save(ckpt, tmp_path / "qefpn.pt")
    result = _cli("--data", data, "--out", tmp_path / "o", *BASE, "--resume", tmp_path / "qefpn.pt")
    assert result.exit_code == 2 and "qefpn.pt holds a 'qefpn' model, expected 'coop'" in result.output
    ckpt["model"]["kind"], ckpt["format_version"] = "coop", 7
    torch.save(ckpt, tmp_path / "v7.pt")
    result = _cli("--data", data, "--out", tmp_path / "o", *BASE, "--resume", tmp_path / "v7.pt")
    assert result.exit_code == 2 and "format version 7" in result.output


def test_an_existing_run_is_kept_unless_forced(tmp_path: Path, data: Path, tiny_coop_checkpoint: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "last.pt").write_bytes(tiny_coop_checkpoint.read_bytes())
    before = (out / "last.pt").read_bytes()
    result = _cli("--data", data, "--out", out, *BASE, "--max-steps", "1")
    assert result.exit_code == 2 and "already holds a run" in result.output and "--force" in result.output
    assert (out / "last.pt").read_bytes() == before
    result = _cli("--data", data, "--out", out, *BASE, "--max-steps", "1", "--force")
    assert result.exit_code == 0, result.output
    assert (out / "last.pt").read_bytes() != before


@pytest.mark.parametrize("flag, preset, constant", [("--ce-constant", "paper", True), ("--ce-decay", "tiny", False),
                                                     (None, "tiny", True)])
def test_ce_weight_schedule_under_full_supervision(tmp_path: Path, data: Path, flag: str | None, preset: str,
                                                    constant: bool) -> None:
    import csv

    args = ["--data", data, "--out", tmp_path / "o", "--preset", preset, "--backbone", "tiny", "--size", "32",
            "--batch-size", "4", "--epochs", "1", "--max-steps", "3", "--grid-every", "0", "--no-progress",
            "--threads", "1", "--ce-weight", "0.5"]
    result = _cli(*args, *([flag] if flag else []))
    assert result.exit_code == 0, result.output
    with open(tmp_path / "o" / "log.csv") as handle:
        lambdas = [float(row["lambda"]) for row in csv.DictReader(handle)]
    assert len(lambdas) == 3 and lambdas[0] == pytest.approx(0.5)
    assert (lambdas == [0.5, 0.5, 0.5]) == constant and (lambdas[2] < lambdas[0]) != constant


@pytest.mark.parametrize("flag, noise", [("--no-langevin-noise", False), (None, True)])
def test_langevin_noise_can_be_turned_off(tmp_path: Path, data: Path, flag: str | None, noise: bool) -> None:
    import torch

    from salkit.train.coop import langevin

    seen = []
    real = langevin.revise_saliency

    def spy(energy, y, x, steps, step_size, noise=True, **kw):
        seen.append(noise)
        return real(energy, y, x, steps, step_size, noise, **kw)

    with pytest.MonkeyPatch.context() as patch:
        from salkit.train.coop import trainer

        patch.setattr(trainer, "revise_saliency", spy)
        result = _cli("--data", data, "--out", tmp_path / "o", *BASE, "--max-steps", "2", *([flag] if flag else []))
    assert result.exit_code == 0, result.output
    assert seen == [noise, noise]  # the Y chain of each step
    saved = torch.load(tmp_path / "o" / "last.pt", map_location="cpu", weights_only=False)
    assert saved["train_config"]["coop"]["langevin_noise"] is noise


def test_divergent_langevin_chain_stops_cleanly_with_last_good_checkpoint(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "run"
    assert _cli("--data", data, "--out", out, *BASE, "--max-steps", "2", "--checkpoint-every", "1", "--grid-every", "2").exit_code == 0
    from PIL import Image

    with Image.open(out / "grids" / "step_0000002.png") as grid:  # image | gt | Ŷ | Ỹ, 4 rows
        assert grid.size == (4 * 64, 4 * 64)
    good = out.joinpath("last.pt").read_bytes()
    result = _cli("--data", data, "--out", out, *BASE, "--resume", out / "last.pt", "--energy-step", "1e30")
    assert result.exit_code == 2
    assert "diverged at step 3" in result.output and "Langevin chain on Y turned NaN/inf at Langevin step 1" in result.output
    assert out.joinpath("last.pt").read_bytes() == good  # the last good checkpoint is untouched


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    exe = str(Path(sys.executable).with_name("train-coop"))
    return [exe, "--data", str(data), "--out", str(out), *BASE, "--epochs", "2", "--checkpoint-every", "1", *extra]


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path: Path, data: Path) -> None:
    straight = subprocess.Popen(_train_cmd(data, tmp_path / "a"), env=_env(), stderr=subprocess.PIPE)
    victim = subprocess.Popen(_train_cmd(data, tmp_path / "b"), env=_env(), stderr=subprocess.PIPE)
    last = tmp_path / "b" / "last.pt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and victim.poll() is None:
        if last.exists() and load_checkpoint(last)["step"] >= 2:
            break
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL  # really killed mid-run, not finished
    killed_at = load_checkpoint(last)["step"]
    assert 2 <= killed_at < 6
    resumed = subprocess.run(_train_cmd(data, tmp_path / "b", "--resume", str(last)), env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert straight.wait() == 0, straight.stderr.read()
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(last)
    assert a["step"] == b["step"] == 6
    for key, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][key], value), key
    for name in ("generator", "energy"):
        assert a["optimizers"][name]["state"][0]["exp_avg"].equal(b["optimizers"][name]["state"][0]["exp_avg"])


_DDP_SCRIPT = """
import sys, torch
from salkit.train.coop.cli import run
out = sys.argv[2]
opts = dict(data=sys.argv[1], out=out, preset="tiny", batch_size=2, seed=1, grid_every=0, progress=False,
            threads=1, epochs=1, checkpoint_every=2, resume=None)
trainer = run(opts)
torch.save({k: v for k, v in trainer.model.named_parameters()}, f"{out}/rank{trainer.dist.rank}.pt")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_on_cpu_keeps_ranks_identical(tmp_path: Path, data: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(_DDP_SCRIPT)
    out = tmp_path / "ddp"
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    cmd = [torchrun, "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           str(script), str(data), str(out)]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == 3 and ckpt["train_config"]["world_size"] == 2  # 12 images / 2 ranks / batch 2
    assert len(ckpt["rng"]["ranks"]) == 2
    for key, value in rank0.items():
        assert torch.equal(rank1[key], value), key
        assert torch.equal(ckpt["state_dict"][key], value), key
    from salkit.train.engine.registry import create_model

    torch.manual_seed(1)
    fresh = dict(create_model("coop", preset="tiny").named_parameters())
    moved = sum(not torch.equal(fresh[k], v) for k, v in rank0.items())
    assert moved > len(rank0) // 2  # training really changed the weights
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 4  # header + 3 steps, written once (rank 0 only)


def test_linear_schedule_decays_per_step_and_resumes_exactly(tmp_path: Path, data: Path) -> None:
    """--lr-schedule linear: every group's rate is base · (1 − step/total) before each step (so the last step
    of 6 runs at 1/6 of the base), and a run stopped after 3 steps and resumed ends with the same weights."""
    args = ["--data", data, *BASE, "--epochs", "2", "--lr-schedule", "linear", "--lr-backbone-scale", "0.5"]
    assert _cli(*args, "--out", tmp_path / "a").exit_code == 0
    first = _cli(*args, "--out", tmp_path / "b", "--max-steps", "3")
    assert first.exit_code == 0, first.output
    half = load_checkpoint(tmp_path / "b" / "last.pt")
    resumed = _cli(*args, "--out", tmp_path / "b", "--resume", tmp_path / "b" / "last.pt")
    assert resumed.exit_code == 0, resumed.output
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert half["step"] == 3 and a["step"] == b["step"] == 6
    for key, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][key], value), key
    for name in ("generator", "energy"):
        for group in a["optimizers"][name]["param_groups"]:
            assert group["lr"] == pytest.approx(group["base_lr"] / 6)  # set before step 6 of 6 (index 5)
    assert {g["base_lr"] for g in a["optimizers"]["generator"]["param_groups"]} == {1e-3, 5e-4}  # tiny: lr_gen 1e-3
    assert not a["schedulers"]
