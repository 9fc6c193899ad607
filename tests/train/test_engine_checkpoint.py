"""Checkpoint format: round trip, build_model, and the user errors for bad files."""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

import pytest
import torch

from salkit.base.errors import SalkitError
from salkit.train.engine.checkpoint import build_model, load_checkpoint, make_checkpoint, save_checkpoint
from salkit.train.engine.registry import create_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("coop", preset="tiny")
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(make_checkpoint(model, name="coop", kind="coop", step=7, epoch=1), path)
    return model, path


def test_round_trip_rebuilds_identical_model(saved) -> None:
    model, path = saved
    ckpt = load_checkpoint(path, expect_kind="coop")
    assert ckpt["format"] == "salkit-checkpoint" and ckpt["format_version"] == 1
    assert ckpt["model"] == {"kind": "coop", "name": "coop", "config": model.config}
    assert ckpt["step"] == 7 and ckpt["epoch"] == 1 and set(ckpt["versions"]) == {"salkit", "torch"}
    rebuilt = build_model(ckpt)
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    assert not list(path.parent.glob(".*tmp"))  # the atomic write left no temporary behind


def test_bad_files_raise_salkit_error_naming_the_path(saved, tmp_path) -> None:
    _, path = saved
    with pytest.raises(SalkitError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SalkitError, match="truncated.pt.*unreadable or truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(SalkitError, match="foreign.pt is not a salkit checkpoint"):
        load_checkpoint(foreign)
    ckpt = load_checkpoint(path)
    ckpt["format_version"] = 99
    future = tmp_path / "future.pt"
    torch.save(ckpt, future)
    with pytest.raises(SalkitError, match="format version 99"):
        load_checkpoint(future)
    with pytest.raises(SalkitError, match="holds a 'coop' model, expected 'qefpn'"):
        load_checkpoint(path, expect_kind="qefpn")


def test_build_model_refuses_mismatched_weights(saved) -> None:
    _, path = saved
    ckpt = load_checkpoint(path)
    ckpt["model"]["config"]["decoder_width"] = 24
    with pytest.raises(SalkitError, match="do not fit"):
        build_model(ckpt)


def pickled_names(path: Path) -> set[str]:
    """Every string the checkpoint's pickle pushes or imports: the module of every class it
    rebuilds is among them (GLOBAL's argument, or STACK_GLOBAL's first string operand)."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    return {arg for op, arg, _ in pickletools.genops(data)
            if op.name in ("GLOBAL", "SHORT_BINUNICODE", "BINUNICODE", "UNICODE")}


def test_trained_checkpoints_pickle_no_salkit_module(tiny_coop_checkpoint, tiny_qefpn_checkpoint) -> None:
    # Checkpoints hold the registry name and plain data only, so moving salkit's modules (issue
    # #16's train/ by family) never breaks loading an older checkpoint.
    for path in (tiny_coop_checkpoint, tiny_qefpn_checkpoint):
        names = pickled_names(path)
        assert "torch._utils _rebuild_tensor_v2" in names  # the scan does see the modules the pickle imports
        assert not [n for n in names if n.startswith("salkit.")], (path, sorted(n for n in names if "salkit" in n))
