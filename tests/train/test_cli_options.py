"""train-coop and train-qefpn share one declaration of their common options and one table of defaults."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from salkit.train.coop import cli as coop_cli
from salkit.train.engine.cli_options import RUN_DEFAULTS, train_options
from salkit.train.qefpn import cli as qefpn_cli

COMMANDS = {"coop": coop_cli, "qefpn": qefpn_cli}
# Every option name each trainer accepted before the shared declaration: none may go.
FORMER_NAMES = {
    "coop": "--data --split --crop --scribble --ce-decay --ce-constant --generator-only --dump-recovered --out --preset --epochs "
            "--batch-size --size --resume --init --seed --backbone --backbone-weights --latent-dim --energy-width "
            "--langevin-steps --energy-step --latent-step --sigma --lr-gen --lr-backbone-scale --lr-energy --lr-decay "
            "--lr-decay-every --lr-schedule --ce-weight --energy-reg --energy-descent --energy-corrupt --no-energy-corrupt --energy-only "
            "--descent-starts --descent-samples --iou-weight --descent-iou --checkpoint-every --grid-every --max-steps "
            "--threads --progress --no-progress --force --help",
    "qefpn": "--data --out --split --crop --preset --solver --edge --size --image-size --width --f-max-iter --f-tol "
             "--b-max-iter --memory --drop-prob --unrolled-layers --epochs --batch-size --lr-backbone --lr-rest "
             "--solver-warmup --lr-warmup --seed --resume --max-steps --checkpoint-every --grid-every --workers "
             "--no-progress --force --backbone --backbone-weights -h --help",
}


def _shared_names() -> list[str]:
    probe = train_options({"paper": {}})(click.command()(lambda **_: None))
    return [param.name for param in probe.params if param.name is not None]


def _names(command: click.Command) -> set[str]:
    ctx = click.Context(command, **command.context_settings)
    return {name for param in command.get_params(ctx) for name in (*param.opts, *param.secondary_opts)}


def test_the_shared_options_are_the_table_and_show_the_same_help() -> None:
    shared = _shared_names()
    assert set(shared) == {*RUN_DEFAULTS, "data", "out"}  # one default for every option but the two required ones
    records = {}
    for family, module in COMMANDS.items():
        ctx = click.Context(module.main, **module.main.context_settings)
        params = {param.name: param for param in module.main.get_params(ctx)}
        records[family] = [params[name].get_help_record(ctx) for name in shared]
        assert set(FORMER_NAMES[family].split()) <= _names(module.main), family
    assert records["coop"] == records["qefpn"]
    helps = {family: CliRunner().invoke(module.main, ["--help"]).output for family, module in COMMANDS.items()}
    for family, module in COMMANDS.items():
        for name, table in module.TRAIN_PRESETS.items():  # each preset's defaults listed under the options
            values = {**RUN_DEFAULTS, **table}
            line = f"{name:<6} epochs {values['epochs']:g}, batch-size {values['batch_size']:g}, crop {values['crop']:g}"
            assert line in helps[family], (family, line)


def _resolved_run(family: str, args: list[str], data: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the trainer is built with when ``args`` are given: its loop options, crop scale, image size
    and threads (training itself is skipped)."""
    import torch

    from salkit.train.coop.trainer import CoopTrainer
    from salkit.train.qefpn.trainer import QEFPNTrainer

    seen: dict[str, Any] = {}

    def no_fit(self: Any, resume: Any = None) -> Path:
        seen.update(loop={k: v for k, v in asdict(self.options).items() if k != "out"}, crop=self.dataset.scale[0],
                    size=self.model.image_size, threads=torch.get_num_threads())
        return out / "last.pt"

    monkeypatch.setattr(CoopTrainer if family == "coop" else QEFPNTrainer, "fit", no_fit)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.update(set_threads=n))
    result = CliRunner().invoke(COMMANDS[family].main, ["--data", str(data), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return seen


def test_both_trainers_resolve_the_same_defaults_from_one_table(synthetic_dataset: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    runs = {family: _resolved_run(family, ["--preset", "tiny"], synthetic_dataset, tmp_path / family, monkeypatch)
            for family in COMMANDS}
    loop_keys = {"seed": "seed", "checkpoint_every": "checkpoint_every", "grid_every": "grid_every", "num_workers": "workers",
                 "progress": "progress", "max_steps": "max_steps", "epochs": "epochs", "batch_size": "batch_size"}
    for family, seen in runs.items():
        values = {**RUN_DEFAULTS, **COMMANDS[family].TRAIN_PRESETS["tiny"]}  # the table, then the preset
        assert seen["loop"] == {**seen["loop"], **{k: values[v] for k, v in loop_keys.items()}}, family
        assert seen["crop"] == values["crop"] and seen["size"] == 64 and "set_threads" not in seen
    # Where the preset tables say nothing, the two trainers run with the same values.
    named = set(coop_cli.TRAIN_PRESETS["tiny"]) | set(qefpn_cli.TRAIN_PRESETS["tiny"])
    common = {k for k, v in loop_keys.items() if v not in named}
    assert {k: runs["coop"]["loop"][k] for k in common} == {k: runs["qefpn"]["loop"][k] for k in common}
    assert {"epochs", "batch_size", "crop"} <= named  # the differences the preset tables declare

    # The same explicit options reach both trainers alike, under both names of --size.
    args = ["--preset", "tiny", "--epochs", "2", "--batch-size", "3", "--crop", "0.5", "--seed", "7", "--checkpoint-every", "4",
            "--grid-every", "0", "--workers", "0", "--max-steps", "5", "--threads", "1", "--no-progress"]
    given = {family: _resolved_run(family, [*args, "--image-size" if family == "coop" else "--size", "32"],
                                   synthetic_dataset, tmp_path / f"{family}2", monkeypatch) for family in COMMANDS}
    assert given["coop"] == given["qefpn"]
    assert given["coop"]["loop"] == {**given["coop"]["loop"], "epochs": 2, "batch_size": 3, "seed": 7, "checkpoint_every": 4,
                                     "grid_every": 0, "num_workers": 0, "max_steps": 5, "progress": False}
    assert given["coop"]["crop"] == 0.5 and given["coop"]["size"] == 32 and given["coop"]["set_threads"] == 1


@pytest.mark.parametrize("family", sorted(COMMANDS))
@pytest.mark.parametrize(("args", "message"), [
    (["--crop", "0"], "--crop must lie in (0, 1]"),
    (["--size", "48"], "--size must be a multiple of 32"),
    (["--workers", "-1"], "--workers must be >= 0"),
    (["--max-steps", "-1"], "--max-steps must be >= 0"),
    (["--threads", "0"], "--threads must be > 0"),
    (["--epochs", "0"], "--epochs must be > 0"),
])
def test_both_trainers_refuse_the_same_bad_shared_options(family: str, args: list[str], message: str,
                                                          synthetic_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(COMMANDS[family].main, ["--data", str(synthetic_dataset), "--out", str(out), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists()  # nothing written


def test_qefpn_resumes_with_its_saved_options_and_starts_from_init_weights(synthetic_dataset: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from salkit.train.engine.checkpoint import load_checkpoint
    from salkit.train.qefpn.trainer import QEFPNTrainer

    first = tmp_path / "first"
    args = ["--data", str(synthetic_dataset), "--preset", "tiny", "--size", "32", "--f-max-iter", "2", "--b-max-iter", "2",
            "--memory", "2", "--solver-warmup", "1", "--edge", "laplacian", "--lr-rest", "0.01", "--no-progress", "--grid-every", "0"]
    result = CliRunner().invoke(qefpn_cli.main, [*args, "--out", str(first), "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    # A resume given nothing but the checkpoint continues with the options it was trained with.
    resumed = CliRunner().invoke(qefpn_cli.main, ["--data", str(synthetic_dataset), "--out", str(first), "--no-progress",
                                                  "--resume", str(first / "last.pt"), "--max-steps", "2"])
    assert resumed.exit_code == 0, resumed.output
    ckpt = load_checkpoint(first / "last.pt", expect_kind="qefpn")
    assert ckpt["step"] == 2 and ckpt["train_config"]["qefpn"]["edge"] == "laplacian"
    assert ckpt["train_config"]["qefpn"]["lr_rest"] == 0.01 and ckpt["model"]["config"]["image_size"] == 32

    started: dict[str, torch.Tensor] = {}

    def no_fit(self: Any, resume: Any = None) -> Path:
        started.update({k: v.clone() for k, v in self.model.state_dict().items()})
        return tmp_path / "none.pt"

    monkeypatch.setattr(QEFPNTrainer, "fit", no_fit)
    result = CliRunner().invoke(qefpn_cli.main, [*args, "--out", str(tmp_path / "second"), "--seed", "5",
                                                 "--init", str(first / "last.pt")])
    assert result.exit_code == 0, result.output
    assert started.keys() == ckpt["state_dict"].keys()
    for key, value in ckpt["state_dict"].items():
        assert torch.equal(started[key], value), key
    other = CliRunner().invoke(qefpn_cli.main, [*args, "--out", str(tmp_path / "third"), "--width", "16",
                                                "--init", str(first / "last.pt")])
    assert other.exit_code == 2 and "another architecture" in other.output
    both = CliRunner().invoke(qefpn_cli.main, [*args, "--out", str(tmp_path / "fourth"), "--init", str(first / "last.pt"),
                                               "--resume", str(first / "last.pt")])
    assert both.exit_code == 2 and "pass one of them" in both.output
