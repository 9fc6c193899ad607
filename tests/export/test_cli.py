"""export-trt on bad input: one error line, exit code 2, and never a half-written bundle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from salkit.base.errors import SalkitError
from salkit.export import checks
from salkit.export.batch_profile import BatchProfile
from salkit.export.bundle_writer import ExportOptions, export_bundle
from salkit.export.cli import main


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _assert_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    text = result.output
    assert "error:" in text and "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def test_missing_checkpoint(tmp_path: Path) -> None:
    _assert_user_error(_run("--ckpt", tmp_path / "nope.pt", "--out", tmp_path / "b"), "nope.pt", "does not exist")


def test_truncated_checkpoint(tmp_path: Path, untrained_coop_checkpoint: Path) -> None:
    cut = tmp_path / "cut.pt"
    data = untrained_coop_checkpoint.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    _assert_user_error(_run("--ckpt", cut, "--out", tmp_path / "b"), "cut.pt", "truncated")


def test_foreign_checkpoint(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": torch.nn.Linear(2, 2).state_dict()}, foreign)
    _assert_user_error(_run("--ckpt", foreign, "--out", tmp_path / "b"), "foreign.pt", "not a salkit checkpoint")
    text = tmp_path / "text.pt"
    text.write_text("hello")
    _assert_user_error(_run("--ckpt", text, "--out", tmp_path / "b2"), "text.pt")


def _edited(src: Path, dst: Path, edit) -> Path:
    ckpt = torch.load(src, weights_only=False)
    edit(ckpt)
    torch.save(ckpt, dst)
    return dst


def test_unknown_model_kind_name_and_format_version(tmp_path: Path, untrained_coop_checkpoint: Path) -> None:
    kind = _edited(untrained_coop_checkpoint, tmp_path / "kind.pt", lambda c: c["model"].update(kind="gan"))
    _assert_user_error(_run("--ckpt", kind, "--out", tmp_path / "b1"), "'gan'")
    name = _edited(untrained_coop_checkpoint, tmp_path / "name.pt", lambda c: c["model"].update(name="unet9000"))
    _assert_user_error(_run("--ckpt", name, "--out", tmp_path / "b2"), "unet9000")
    version = _edited(untrained_coop_checkpoint, tmp_path / "v.pt", lambda c: c.update(format_version=99))
    _assert_user_error(_run("--ckpt", version, "--out", tmp_path / "b3"), "99")
    for out in ("b1", "b2", "b3"):
        assert not (tmp_path / out).exists()


@pytest.mark.parametrize("spec", ["8", "1:8", "0:1:2", "4:2:8", "a:b:c", "1:8:4"])
def test_invalid_batch_spec(tmp_path: Path, untrained_coop_checkpoint: Path, spec: str) -> None:
    _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", tmp_path / "b", "--batch", spec),
                       f"invalid batch spec {spec!r}")


def test_batch_spec_parses() -> None:
    assert BatchProfile.parse("2:4:32") == BatchProfile(2, 4, 32)


def test_existing_output_without_force_and_unwritable_output(tmp_path: Path, untrained_coop_checkpoint: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", existing), "already exists", "--force")
    assert (existing / "keep.txt").read_text() == "mine"
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", blocker / "bundle"), "cannot be written")


def test_size_that_does_not_fit_the_energy_net(tmp_path: Path, untrained_coop_checkpoint: Path) -> None:
    _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", tmp_path / "b", "--size", "96"), "--size 96")


def test_int8_without_calibration_images(tmp_path: Path, untrained_coop_checkpoint: Path) -> None:
    _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", tmp_path / "b", "--precision", "int8"),
                       "--calib")


def test_failed_check_leaves_no_bundle_and_keeps_the_old_one(tmp_path: Path, untrained_coop_checkpoint: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out, repo = tmp_path / "bundle", tmp_path / "triton"
    previous_umask = os.umask(0o022)
    try:
        result = _run("--ckpt", untrained_coop_checkpoint, "--out", out, "--no-engine", "--triton-repo", repo)
    finally:
        os.umask(previous_umask)
    assert result.exit_code == 0, result.output
    for stage in ("exporting energy_grad", "checking energy_grad", "writing Triton model repository"):
        assert stage in result.output  # progress per stage
    assert sorted(p.parent.name for p in repo.glob("*/config.pbtxt")) == [
        "coop_encoder", "coop_energy", "coop_energy_grad", "coop_generator", "coop_latent_decoder", "saliency"]
    _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", tmp_path / "other", "--triton-repo", repo),
                       "Triton repository", "already exists")
    for path in (out, out / "manifest.json", out / "energy_grad.onnx", repo, repo / "saliency" / "1" / "model.py"):
        assert path.stat().st_mode & 0o044 == 0o044, path  # readable by group and others (umask 022)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engines"] == {"status": "not built", "reason": "--no-engine given", "files": {}}
    assert manifest["coop"]["langevin_step"] == 0.25  # from the checkpoint's train_config
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    real_compare = checks.compare

    # Fail at the second graph: encoder.onnx is already in the temporary directory by then.
    def broken_graph(graph, sess, inputs, label, tolerance):
        if graph.name == "latent_decoder":
            raise SalkitError(f"graph {graph.name!r} output 'logits' on {label}: differs (test)")
        return real_compare(graph, sess, inputs, label, tolerance)

    monkeypatch.setattr(checks, "compare", broken_graph)
    result = _run("--ckpt", untrained_coop_checkpoint, "--out", out, "--force")
    _assert_user_error(result, "latent_decoder")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old bundle intact
    assert (repo / "saliency" / "config.pbtxt").exists()
    fresh = tmp_path / "fresh"
    _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", fresh), "latent_decoder")
    assert not fresh.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left over


def test_graph_with_an_operator_tensorrt_lacks_is_rejected_at_export(tmp_path: Path) -> None:
    """A real module whose ONNX uses LayerNormalization (not importable in the listed TensorRT)."""
    from salkit.export.checks import validate_graph
    from salkit.export.graphs import GraphDef
    from salkit.export.onnx_io import export_module

    module = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)).eval()
    graph = GraphDef("normed", module, ("z",), ("out",), lambda b, g: (torch.randn(b, 8, generator=g),))
    path = tmp_path / "normed.onnx"
    export_module(module, graph.random_inputs(2, torch.Generator()), path, input_names=("z",), output_names=("out",),
                  opset=17)
    with pytest.raises(SalkitError, match=r"graph 'normed'.*LayerNormalization"):
        validate_graph(graph, path)


def test_export_options_reject_unknown_precision(tmp_path: Path, untrained_coop_checkpoint: Path) -> None:
    with pytest.raises(SalkitError, match="bf8"):
        export_bundle(ExportOptions(ckpt=untrained_coop_checkpoint, out=tmp_path / "b", precision="bf8"))


def test_bf16_where_the_cpu_has_no_native_bf16(tmp_path: Path, untrained_coop_checkpoint: Path, synthetic_dataset: Path,
                                               simulated_cpu, monkeypatch: pytest.MonkeyPatch) -> None:
    simulated_cpu("avx512")
    _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", tmp_path / "b", "--precision", "bf16",
                            "--calib", synthetic_dataset), "--precision bf16: bf16 needs AMX-BF16 or AVX512-BF16, which this "
                                                           "CPU (simulated Intel Xeon Ice Lake (AVX-512, VNNI)) lacks")
    simulated_cpu("amx")  # the runtime's reader, so SALKIT_CPU_DISABLE counts for export too
    monkeypatch.setenv("SALKIT_CPU_DISABLE", "bf16")
    _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", tmp_path / "b", "--precision", "bf16",
                            "--calib", synthetic_dataset), "(forced off by SALKIT_CPU_DISABLE)")
    monkeypatch.setenv("SALKIT_CPU_DISABLE", "bf61")  # refused before any export work, in one line
    result = _run("--ckpt", untrained_coop_checkpoint, "--out", tmp_path / "b")
    _assert_user_error(result, "SALKIT_CPU_DISABLE=bf61: unknown capability 'bf61'; known names: bf16,")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_calibration_folder_without_readable_images(tmp_path: Path, untrained_coop_checkpoint: Path) -> None:
    broken = tmp_path / "photos" / "img"
    broken.mkdir(parents=True)
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    (broken / "b.png").write_bytes(b"")
    _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", tmp_path / "b", "--calib", tmp_path / "photos"),
                       "has no readable images", "2 failed to decode")
    assert not (tmp_path / "b").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", tmp_path / "b", "--calib", empty), "holds no images")


def test_split_energy_reaches_the_export_and_only_a_coop_model_takes_it(tmp_path: Path, untrained_coop_checkpoint: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """--split-energy (off by default) reaches the export's options; on another kind's checkpoint it
    is a one-line error and nothing is written."""
    from salkit.export import bundle_writer
    from salkit.train.engine.checkpoint import make_checkpoint, save_checkpoint
    from salkit.train.engine.registry import create_model

    seen: list[ExportOptions] = []

    def stop(options: ExportOptions, progress=None):
        seen.append(options)
        raise SalkitError("stopped before exporting")

    with monkeypatch.context() as patch:
        patch.setattr(bundle_writer, "export_bundle", stop)
        _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", tmp_path / "a"), "stopped")
        _assert_user_error(_run("--ckpt", untrained_coop_checkpoint, "--out", tmp_path / "b", "--split-energy"), "stopped")
    assert [o.split_energy for o in seen] == [False, True]
    qefpn = tmp_path / "qefpn.pt"
    save_checkpoint(make_checkpoint(create_model("qefpn", preset="tiny", image_size=64), name="qefpn", kind="qefpn"), qefpn)
    out = tmp_path / "q"
    _assert_user_error(_run("--ckpt", qefpn, "--out", out, "--no-engine", "--split-energy"), "--split-energy", "qefpn")
    assert not out.exists()
