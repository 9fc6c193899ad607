"""QE-FPN training: learning-rate schedule, solver warm-up, exact resume, CLI, reference predictor."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from salkit.base.errors import SalkitError
from salkit.kernels.broyden import broyden
from salkit.train.engine.checkpoint import build_model, load_checkpoint
from salkit.train.engine.schedule import linear_warmup_decay as lr_factor
from salkit.train.qefpn.cli import main as train_qefpn
from salkit.train.qefpn.predict import QEFPNReferencePredictor
from tests.fixtures.qefpn_models import train_tiny_qefpn

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"image_size": 32, "f_max_iter": 4, "b_max_iter": 4, "memory": 4}


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_lr_factor_warms_up_then_decays_linearly() -> None:
    assert [lr_factor(s, 4, 12) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(8, 4, 12) == pytest.approx(0.5)
    assert lr_factor(12, 4, 12) == 0.0
    assert lr_factor(3, 0, 10) == pytest.approx(0.7)


def test_resumed_run_equals_uninterrupted_run_and_warm_up_switches_solver(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    # one unrolled warm-up step, then the quasi solver with implicit gradients
    straight = train_tiny_qefpn(synthetic_dataset, tmp_path / "straight", steps=2, solver_warmup_steps=1, **SMALL)
    train_tiny_qefpn(synthetic_dataset, tmp_path / "cut", steps=1, solver_warmup_steps=1, **SMALL)  # mid-epoch 0
    # resume from the cut run's checkpoint into the same folder, as `--resume` does
    import salkit.train.qefpn.trainer as qt
    from salkit.train.data.dataset import SaliencyDataset
    from salkit.train.engine.registry import create_model
    from salkit.train.engine.trainer import LoopOptions

    model = create_model("qefpn", preset="tiny", **SMALL)
    options = LoopOptions(out=str(tmp_path / "cut"), epochs=2, batch_size=4, seed=0, progress=False,
                          checkpoint_every=1000, grid_every=0, max_steps=2)
    dataset = SaliencyDataset(synthetic_dataset, 32, labels="mask", augment=True)
    qt.QEFPNTrainer(model, dataset, options, qt.QEFPNSettings(solver_warmup_steps=1, lr_warmup_steps=1)).fit(
        tmp_path / "cut" / "last.pt"
    )
    a, b = load_checkpoint(straight), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert a["step"] == b["step"] == 2
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    rows_a, rows_b = _rows(tmp_path / "straight"), _rows(tmp_path / "cut")
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    # warm-up: an unrolled step (unrolled_layers iterations, no backward solve), then the quasi solver
    assert [r["unrolled"] for r in rows_a] == ["1.0", "0.0"]
    assert float(rows_a[0]["solver_iterations"]) == 3.0 and float(rows_a[0]["backward_iterations"]) == 0.0
    assert 1 <= float(rows_a[1]["solver_iterations"]) <= 4 and float(rows_a[1]["backward_iterations"]) >= 1
    assert all(float(r["relative_residual"]) > 0 for r in rows_a)


def test_cli_trains_and_refuses_to_overwrite(synthetic_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--data", str(synthetic_dataset), "--out", str(out), "--preset", "tiny", "--size", "32",
            "--f-max-iter", "3", "--b-max-iter", "3", "--memory", "3", "--max-steps", "2", "--solver-warmup", "1",
            "--edge", "laplacian", "--solver", "equilibrium", "--no-progress", "--grid-every", "1"]
    result = CliRunner().invoke(train_qefpn, args)
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out / "last.pt", expect_kind="qefpn")
    assert ckpt["step"] == 2 and ckpt["model"]["config"]["solver"] == "equilibrium"
    assert ckpt["train_config"]["qefpn"]["edge"] == "laplacian"
    assert len(list((out / "grids").glob("*.png"))) == 2
    again = CliRunner().invoke(train_qefpn, args)
    assert again.exit_code == 2 and "already holds a run" in again.output
    # same seed, same run: initial weights come from --seed, not from whatever ran before
    torch.manual_seed(12345)
    forced = CliRunner().invoke(train_qefpn, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    repeat = load_checkpoint(out / "last.pt")
    for key, value in ckpt["state_dict"].items():
        assert torch.equal(value, repeat["state_dict"][key]), key
    missing = CliRunner().invoke(train_qefpn, ["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o2"),
                                               "--preset", "tiny"])
    assert missing.exit_code == 2 and "nope" in missing.output


def test_reference_predictor_matches_the_model(tiny_qefpn_checkpoint: Path) -> None:
    predictor = QEFPNReferencePredictor.from_checkpoint(tiny_qefpn_checkpoint)
    model = build_model(load_checkpoint(tiny_qefpn_checkpoint)).eval()
    s = model.image_size
    x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(0))
    out = predictor.predict_tensor(x.numpy())
    assert set(out) == {"saliency", "iterations", "residual"}
    assert out["saliency"].shape == (2, 1, s, s) and out["saliency"].dtype == np.float32
    assert out["iterations"].shape == (2,) and out["residual"].shape == (2,)
    with torch.no_grad():
        inj = model.inject(x)
        z, _ = model.solve(inj, "equilibrium")
        expected = torch.sigmoid(model.decode(z)).numpy()
        # the reported residual is the definition's ‖f(z) − z‖ / ‖z‖ at the returned state
        residual = ((model.f(z, inj) - z).norm(dim=1) / z.norm(dim=1)).numpy()
    np.testing.assert_allclose(out["saliency"], expected, atol=1e-6)
    np.testing.assert_allclose(out["residual"], residual, rtol=1e-3)
    # steps=N: exactly N steps with the model's tolerance and memory, as the runtime's solve
    fixed = predictor.predict_tensor(x.numpy(), steps=3)
    config = model.solver_config
    calls = []

    def f(z: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return model.f(z, inj)

    with torch.no_grad():
        z3, stats3 = broyden(f, torch.zeros_like(inj), max_iter=3, tol=config.f_tol, memory=config.memory,
                             stop_mode=config.stop_mode, fixed_iterations=True)
        np.testing.assert_allclose(fixed["saliency"], torch.sigmoid(model.decode(z3)).numpy(), atol=1e-6)
    assert len(calls) == 4
    np.testing.assert_array_equal(fixed["iterations"], stats3["iterations"].numpy())
    assert np.all((fixed["iterations"] >= 0) & (fixed["iterations"] <= 3))
    with pytest.raises(SalkitError, match=r"\(B, 3, 64, 64\)"):
        predictor.predict_tensor(np.zeros((1, 3, 32, 32), np.float32))
