"""`train-coop --scribble` end to end: bad scribbles, skipped unannotated images, hidden gt, exact resume."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from salkit.train.coop.cli import main
from salkit.train.data.dataset import SaliencyDataset
from salkit.train.engine.checkpoint import load_checkpoint

BASE = ["--preset", "tiny", "--batch-size", "4", "--seed", "5", "--grid-every", "0", "--no-progress", "--threads", "1",
        "--langevin-steps", "2"]


def _cli(*args: object):
    return CliRunner().invoke(main, [*map(str, args)])


@pytest.fixture()
def data(tmp_path: Path, synthetic_dataset_factory) -> Path:
    out = tmp_path / "data"
    shutil.copytree(synthetic_dataset_factory(8, 64, 2), out)  # 2 steps per epoch at batch 4
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_bad_scribbles_name_the_file(tmp_path: Path, data: Path) -> None:
    bad = sorted((data / "scribble").iterdir())[2]
    values = np.asarray(Image.open(bad)).copy()
    values[0, :3] = 7
    Image.fromarray(values).save(bad)
    result = _cli("--scribble", "--data", data, "--out", tmp_path / "o", *BASE)
    assert result.exit_code == 2 and bad.name in result.output and "[7]" in result.output
    bad.unlink()  # now one image has no scribble at all
    result = _cli("--scribble", "--data", data, "--out", tmp_path / "o", *BASE)
    assert result.exit_code == 2 and bad.stem in result.output
    shutil.rmtree(data / "scribble")
    result = _cli("--scribble", "--data", data, "--out", tmp_path / "o", *BASE)
    assert result.exit_code == 2 and "no scribble folder" in result.output
    result = _cli("--data", data, "--out", tmp_path / "o", *BASE, "--dump-recovered", "2")
    assert result.exit_code == 2 and "--dump-recovered needs --scribble" in result.output
    assert not (tmp_path / "o" / "last.pt").exists()


def test_images_without_annotation_are_skipped_and_counted(tmp_path: Path, data: Path) -> None:
    blank = sorted((data / "scribble").iterdir())[1:3]
    for path in blank:
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(path)
    dataset = SaliencyDataset(data, 64, labels="scribble")
    assert len(dataset) == 6 and dataset.skipped == blank
    assert all(int((dataset[i]["scribble"] > 0).sum()) > 0 for i in range(len(dataset)))
    result = _cli("--scribble", "--data", data, "--out", tmp_path / "o", *BASE, "--max-steps", "1")
    assert result.exit_code == 0, result.output
    assert f"skipped 2 image(s) whose scribble has no annotated pixel at size 64: {blank[0].name}" in result.output
    (row,) = _rows(tmp_path / "o" / "log.csv")
    assert all(math.isfinite(float(v)) for v in row.values()), row
    assert float(row["unannotated"]) == 0.0
    for path in sorted((data / "scribble").iterdir()):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(path)
    result = _cli("--scribble", "--data", data, "--out", tmp_path / "o2", *BASE)
    assert result.exit_code == 2 and "no scribble" in result.output and "all 8" in result.output


def test_hidden_gt_only_measures_and_resume_is_exact(tmp_path: Path, data: Path) -> None:
    """Run A sees gt/ (for the recovery log) and trains 4 steps straight; run B has no gt/ and is
    stopped after 2 steps, then resumed without --scribble (the mode comes from the checkpoint).
    Identical weights prove both that gt never reaches a loss and that resume is exact."""
    blind = tmp_path / "blind"
    shutil.copytree(data, blind, ignore=shutil.ignore_patterns("gt"))
    a, b = tmp_path / "a", tmp_path / "b"
    assert _cli("--scribble", "--data", data, "--out", a, *BASE, "--epochs", "2", "--dump-recovered", "2").exit_code == 0
    assert _cli("--scribble", "--data", blind, "--out", b, *BASE, "--epochs", "2", "--max-steps", "2",
                "--dump-recovered", "2").exit_code == 0
    result = _cli("--data", blind, "--out", b, "--resume", b / "last.pt", "--no-progress")
    assert result.exit_code == 0, result.output
    ckpt_a, ckpt_b = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert ckpt_a["step"] == ckpt_b["step"] == 4
    assert ckpt_a["train_config"]["supervision"] == ckpt_b["train_config"]["supervision"] == "scribble"
    for key, value in ckpt_a["state_dict"].items():
        assert torch.equal(ckpt_b["state_dict"][key], value), key
    rows_a, rows_b = _rows(a / "log.csv"), _rows(b / "log.csv")
    assert [r["step"] for r in rows_b] == ["1", "2", "3", "4"]
    assert {"recovery_mae", "recovery_s", "recovery_mae_unknown"} <= set(rows_a[0]) and "recovery_mae" not in rows_b[0]
    assert all(0.0 < float(r["recovery_mae"]) < 1.0 and 0.0 < float(r["recovery_s"]) < 1.0 for r in rows_a)
    assert [float(r["lambda"]) for r in rows_a + rows_b] == [1.0] * 8  # λ stays constant in scribble mode by default
    for r_a, r_b in zip(rows_a, rows_b, strict=True):  # the same training numbers, with or without the hidden gt
        assert r_a["energy_gap"] == r_b["energy_gap"] and r_a["ce"] == r_b["ce"]
    for run, panels in ((a, 4), (b, 3)):  # image | scribble | recovered (| gt), one row per image
        assert sorted(p.name for p in (run / "recovered").iterdir()) == ["step_0000002.png", "step_0000004.png"]
        with Image.open(run / "recovered" / "step_0000004.png") as grid:
            assert grid.size == (panels * 64, 4 * 64)
    with Image.open(a / "recovered" / "step_0000004.png") as grid:
        cells = np.asarray(grid.convert("L"), dtype=np.float64)
    for row in range(4):  # the gt panel is binary, the scribble panel only 0 / 128 / 255
        gt_cell = cells[row * 64 : (row + 1) * 64, 192:256]
        assert set(np.unique(gt_cell)) <= {0.0, 255.0}
        assert set(np.unique(cells[row * 64 : (row + 1) * 64, 64:128])) <= {0.0, 128.0, 255.0}


_DDP_SCRIPT = """
import sys, torch
from salkit.train.coop.cli import run
out = sys.argv[2]
opts = dict(data=sys.argv[1], out=out, preset="tiny", batch_size=2, seed=1, grid_every=0, progress=False,
            threads=1, epochs=1, checkpoint_every=2, resume=None, scribble=True, dump_recovered=2, langevin_steps=2)
trainer = run(opts)
torch.save({k: v for k, v in trainer.model.named_parameters()}, f"{out}/rank{trainer.dist.rank}.pt")
"""


@pytest.mark.slow
def test_two_process_ddp_in_scribble_mode_keeps_ranks_identical(tmp_path: Path, data: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    script = tmp_path / "ddp_scribble.py"
    script.write_text(_DDP_SCRIPT)
    out = tmp_path / "ddp"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    cmd = [torchrun, "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(port),
           str(script), str(data), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == 2 and ckpt["train_config"]["world_size"] == 2  # 8 images / 2 ranks / batch 2
    assert ckpt["train_config"]["supervision"] == "scribble"
    for key, value in rank0.items():
        assert torch.equal(rank1[key], value), key
        assert torch.equal(ckpt["state_dict"][key], value), key
    from salkit.train.engine.registry import create_model

    torch.manual_seed(1)
    fresh = dict(create_model("coop", preset="tiny").named_parameters())
    assert sum(not torch.equal(fresh[k], v) for k, v in rank0.items()) > len(rank0) // 2  # it really trained
    rows = _rows(out / "log.csv")
    assert len(rows) == 2 and all(0.0 < float(r["recovery_mae"]) < 1.0 for r in rows)  # rank 0 writes once
    assert sorted(p.name for p in (out / "recovered").iterdir()) == ["step_0000002.png"]


@pytest.mark.parametrize(("flag", "term"), [("--smoothness-weight", "edge_aware_smoothness"),
                                            ("--coherence-weight", "local_coherence")])
def test_a_region_term_weight_adds_that_term_on_the_photo_in_pixel_values(
        tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch, flag: str, term: str) -> None:
    """--smoothness-weight / --coherence-weight w: the generator's loss gains w · term(sigmoid(G), photo in [0, 1]);
    0 (the default) leaves it out, and it is refused without --scribble."""
    import salkit.train.coop.trainer as trainer_module

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = getattr(trainer_module, term)
    monkeypatch.setattr(trainer_module, term, lambda p, img: seen.append((p, img)) or real(p, img))
    result = _cli("--scribble", "--data", data, "--out", tmp_path / "off", *BASE, "--max-steps", "1")
    assert result.exit_code == 0, result.output
    assert seen == []
    result = _cli("--scribble", "--data", data, "--out", tmp_path / "on", *BASE, "--max-steps", "1", flag, "0.3")
    assert result.exit_code == 0, result.output
    ((prob, image),) = seen
    prob, image = prob.detach(), image.detach()
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(image.max()) > 0.5  # pixel values, not z-scores
    assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0 and image.shape[1] == 3 and prob.shape[1] == 1
    result = _cli("--data", data, "--out", tmp_path / "full", *BASE, flag, "0.3")
    assert result.exit_code == 2 and f"{flag} is for --scribble" in result.output
    assert not (tmp_path / "full" / "last.pt").exists()
