"""The shared training loop on a toy model: exact resume, divergence stop, logs and grids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from salkit.train.engine.checkpoint import load_checkpoint
from salkit.train.engine.registry import register_model
from salkit.train.engine.trainer import DivergenceError, LoopOptions, Trainer


class Toy(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, width), nn.BatchNorm1d(width), nn.Tanh(), nn.Linear(width, 1))
        self.config = {"width": width}


@register_model("toy-engine-test", kind="toy")
def _toy(width: int = 4) -> Toy:
    return Toy(width)


class ToyTrainer(Trainer):
    model_name, model_kind = "toy-engine-test", "toy"

    def __init__(self, *args, explode_at: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.explode_at = explode_at

    def build_optimizers(self):
        return {"main": torch.optim.Adam(self.model.parameters(), lr=0.05)}

    def build_schedulers(self, optimizers):
        return {"main": torch.optim.lr_scheduler.StepLR(optimizers["main"], 1, 0.5)}

    def setup(self) -> None:
        self.net = self.ddp(self.model)

    def train_step(self, batch):
        x, y = batch
        noise = torch.randn_like(y) * 0.1  # consumes the global RNG, as Langevin does
        loss = (self.net.net(x) - y - noise).pow(2).mean()
        if self.explode_at is not None and self.step + 1 >= self.explode_at:
            loss = loss * float("nan")
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    def grid_panels(self, batch):
        return [torch.rand(2, 1, 8, 8), torch.rand(2, 3, 8, 8)]


def _dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(22, 3, generator=g)
    return TensorDataset(x, x.sum(1, keepdim=True))


def _run(out: Path, resume: Path | None = None, **loop) -> Toy:
    torch.manual_seed(123)
    model = Toy()
    options = LoopOptions(out=str(out), epochs=3, batch_size=4, seed=5, progress=False, **loop)
    ToyTrainer(model, _dataset(), options, {"note": "toy"}).fit(resume)
    return model


def test_interrupted_then_resumed_run_matches_uninterrupted(tmp_path: Path) -> None:
    straight = _run(tmp_path / "a", checkpoint_every=100)
    _run(tmp_path / "b", max_steps=8, checkpoint_every=100)  # stops mid-epoch 1 (6 batches/epoch)
    stopped = load_checkpoint(tmp_path / "b" / "last.pt")
    assert stopped["step"] == 8 and stopped["epoch"] == 1 and stopped["train_config"]["loop"]["batch_in_epoch"] == 2
    resumed = _run(tmp_path / "c", resume=tmp_path / "b" / "last.pt", checkpoint_every=100)
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    final = load_checkpoint(tmp_path / "c" / "last.pt")
    assert final["step"] == 18 and final["epoch"] == 3
    assert final["schedulers"]["main"]["last_epoch"] == 3


def test_divergence_stops_cleanly_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    options = LoopOptions(out=str(tmp_path), epochs=2, batch_size=4, progress=False, checkpoint_every=3)
    trainer = ToyTrainer(Toy(), _dataset(), options, {}, explode_at=5)
    with pytest.raises(DivergenceError, match=r"diverged at step 5 .*loss = nan.*last good checkpoint .*last.pt"):
        trainer.fit()
    kept = load_checkpoint(tmp_path / "last.pt")
    assert kept["step"] == 3
    assert all(torch.isfinite(v).all() for v in kept["state_dict"].values() if v.is_floating_point())


def test_csv_log_and_grids_are_written_and_log_is_trimmed_on_resume(tmp_path: Path) -> None:
    _run(tmp_path, max_steps=5, checkpoint_every=3, grid_every=2)
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ["step", "epoch", "loss"] and len(lines) == 6
    assert sorted(p.name for p in (tmp_path / "grids").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 5
    # A run killed after logging step 6 but before checkpointing it: the resumed run rewrites step 6.
    with open(tmp_path / "log.csv", "a") as handle:
        handle.write("6,1,999.0,0\n")
    _run(tmp_path, resume=tmp_path / "last.pt", max_steps=7, checkpoint_every=100)
    steps = [int(line.split(",")[0]) for line in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 8))
    assert "999.0" not in (tmp_path / "log.csv").read_text()


def test_kept_checkpoints_are_the_weights_at_their_steps(tmp_path: Path) -> None:
    """--keep-every: kept/step_N.pt holds the state at step N (later saves of last.pt leave it alone), and a resume
    that passes a kept step again leaves the same file."""
    _run(tmp_path / "a", checkpoint_every=100, keep_every=5)  # 18 steps: kept at 5, 10, 15
    kept = sorted(p.name for p in (tmp_path / "a" / "kept").iterdir())
    assert kept == ["step_0000005.pt", "step_0000010.pt", "step_0000015.pt"]
    stopped = _run(tmp_path / "b", checkpoint_every=100, max_steps=10)  # no keeping: the reference at step 10
    at_ten = load_checkpoint(tmp_path / "a" / "kept" / "step_0000010.pt")
    assert at_ten["step"] == 10
    for key, value in stopped.state_dict().items():
        assert torch.equal(at_ten["state_dict"][key], value), key
    assert load_checkpoint(tmp_path / "a" / "last.pt")["step"] == 18
    _run(tmp_path / "c", max_steps=7, checkpoint_every=3, keep_every=5)  # saved at 6: a resume runs step 7 again
    _run(tmp_path / "c", resume=tmp_path / "c" / "last.pt", checkpoint_every=3, keep_every=5)
    again = load_checkpoint(tmp_path / "c" / "kept" / "step_0000010.pt")
    for key, value in at_ten["state_dict"].items():
        assert torch.equal(again["state_dict"][key], value), key
