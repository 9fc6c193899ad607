"""Triton model repository: every config.pbtxt parses as Triton's ModelConfig and matches the
bundle; the Python-backend loop model, run over BLS against the ONNX graphs, equals torch."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import json_format, text_format

from salkit.base.errors import SalkitError
from salkit.export.triton_repo import write_triton_repo
from salkit.runtime.bundle import load_bundle, sha256_file
from tests.coop_reference import cooperative_reference
from tests.export import fake_triton

torch.set_num_threads(2)


def _model_config_pb2():
    import tritonclient

    # tritonclient.grpc's __init__ insists on grpcio; the generated protobuf module does not.
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse(path: Path):
    return text_format.Parse(path.read_text(), _model_config_pb2().ModelConfig())


def _repo(bundle: Path, factory: pytest.TempPathFactory, name: str) -> Path:
    """The Triton repository of ``bundle``, written once per module into a fresh folder."""
    repo = factory.mktemp(name) / "repo"
    write_triton_repo(load_bundle(bundle), bundle, repo)
    return repo


@pytest.fixture(scope="module")
def coop_repo(tiny_coop_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _repo(tiny_coop_bundle, tmp_path_factory, "triton")


def test_every_config_parses_and_matches_the_bundle(coop_repo: Path, tiny_coop_bundle: Path) -> None:
    manifest = load_bundle(tiny_coop_bundle)
    configs = sorted(coop_repo.glob("*/config.pbtxt"))
    assert {p.parent.name for p in configs} == {f"coop_{g}" for g in manifest.graphs} | {"saliency"}
    pb2 = _model_config_pb2()
    for path in configs:
        config = _parse(path)
        assert config.name == path.parent.name
        assert config.max_batch_size == manifest.batch["max"]
        assert config.HasField("dynamic_batching")
        assert list(config.dynamic_batching.preferred_batch_size) == [manifest.batch["opt"]]
        if config.name == "saliency":
            assert config.backend == "python" and (path.parent / "1" / "model.py").exists()
            settings = json.loads(config.parameters["salkit_settings"].string_value)
            assert settings["langevin_step"] == manifest.coop["langevin_step"] and settings["prefix"] == "coop_"
            assert [i.name for i in config.input] == ["IMAGE"] and list(config.input[0].dims) == [3, 64, 64]
            assert [o.name for o in config.output] == ["SALIENCY", "UNCERTAINTY"]
            continue
        graph = manifest.graphs[config.name.removeprefix("coop_")]
        assert config.platform == "onnxruntime_onnx"
        assert config.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_CPU
        _assert_graph_io(config, graph, pb2)
        assert sha256_file(path.parent / "1" / "model.onnx") == graph.sha256


def _assert_graph_io(config, graph, pb2) -> None:
    for declared, spec in [*zip(config.input, graph.inputs, strict=True), *zip(config.output, graph.outputs, strict=True)]:
        assert declared.name == spec.name and declared.data_type == pb2.TYPE_FP32
        if len(spec.shape) == 1:  # (B,): Triton needs non-empty dims, so [1] reshaped to []
            assert list(declared.dims) == [1] and declared.HasField("reshape") and list(declared.reshape.shape) == []
        else:
            assert list(declared.dims) == list(spec.shape[1:]) and not declared.HasField("reshape")
    assert len(config.input) == len(graph.inputs) and len(config.output) == len(graph.outputs)


def test_python_graph_backend_configs_parse_and_carry_the_sys_path(tiny_coop_bundle: Path, tmp_path: Path) -> None:
    manifest = load_bundle(tiny_coop_bundle)
    repo = tmp_path / "repo"
    extra = [str(tmp_path / "site-a"), str(tmp_path / "site-b")]
    write_triton_repo(manifest, tiny_coop_bundle, repo, graph_backend="python", extra_sys_path=extra)
    pb2 = _model_config_pb2()
    for graph in manifest.graphs:
        path = repo / f"coop_{graph}" / "config.pbtxt"
        config = _parse(path)
        assert config.backend == "python" and config.platform == ""
        assert config.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_CPU
        assert config.parameters["EXTRA_SYS_PATH"].string_value.split(os.pathsep) == extra
        _assert_graph_io(config, manifest.graphs[graph], pb2)
        assert (path.parent / "1" / "model.py").exists() and (path.parent / "1" / "_salkit_prelude.py").exists()
        assert sha256_file(path.parent / "1" / "model.onnx") == manifest.graphs[graph].sha256
    entry = _parse(repo / "saliency" / "config.pbtxt")
    assert entry.parameters["EXTRA_SYS_PATH"].string_value.split(os.pathsep) == extra
    assert "salkit_settings" in entry.parameters
    with pytest.raises(SalkitError, match="bogus"):
        write_triton_repo(manifest, tiny_coop_bundle, tmp_path / "r2", graph_backend="bogus")
    with pytest.raises(SalkitError, match="cannot contain"):
        write_triton_repo(manifest, tiny_coop_bundle, tmp_path / "r3", graph_backend="python", extra_sys_path=['/a"b'])
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


def test_python_graph_model_reads_its_sys_path_and_batches_requests(tiny_coop_bundle: Path, tmp_path: Path) -> None:
    """The graph model.py under the stand-in backend: EXTRA_SYS_PATH reaches sys.path before numpy
    is imported, and two requests handed over together equal ONNX Runtime on each alone."""
    import onnxruntime as ort

    manifest = load_bundle(tiny_coop_bundle)
    repo = tmp_path / "repo"
    marker = tmp_path / "site"
    write_triton_repo(manifest, tiny_coop_bundle, repo, graph_backend="python", extra_sys_path=[str(marker)])
    fake_triton.install(repo)
    folder = repo / "coop_encoder" / "1"
    spec = importlib.util.spec_from_file_location("triton_graph_encoder", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        assert sys.path[0] == str(marker.resolve())
    finally:
        while str(marker.resolve()) in sys.path:
            sys.path.remove(str(marker.resolve()))
    config = json_format.MessageToDict(_parse(repo / "coop_encoder" / "config.pbtxt"), preserving_proto_field_name=True)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config)})
    rng = np.random.default_rng(1)
    images = [rng.standard_normal((b, 3, 64, 64)).astype(np.float32) for b in (1, 2)]
    responses = model.execute([fake_triton.Request({"image": x}) for x in images])
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [t.name for t in manifest.graphs["encoder"].outputs]
    for x, response in zip(images, responses, strict=True):
        assert not response.has_error()
        got = {t.name(): t.as_numpy() for t in response.output_tensors}
        for name, want in zip(names, session.run(names, {"image": x}), strict=True):
            assert got[name].shape == want.shape and np.abs(got[name] - want).max() <= 1e-5
    (bad,) = model.execute([fake_triton.Request({"image": np.zeros((1, 3, 8, 8), np.float32)})])
    assert bad.has_error() and "image" in bad.error().message().lower()


def test_a_config_that_breaks_the_schema_is_caught() -> None:
    with pytest.raises(text_format.ParseError):
        text_format.Parse('name: "x"\nmax_batch_size: 4\ndynamic_batching { bogus: 1 }\n', _model_config_pb2().ModelConfig())


def _load_loop_model(repo: Path, entry: str):
    fake = fake_triton.install(repo)
    spec = importlib.util.spec_from_file_location(f"triton_loop_{entry}", repo / entry / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = json_format.MessageToDict(_parse(repo / entry / "config.pbtxt"), preserving_proto_field_name=True)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config)})
    return model, fake


@pytest.fixture(scope="module")
def strong_repo(strong_coop_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _repo(strong_coop_bundle, tmp_path_factory, "triton_strong")


@pytest.fixture(scope="module")
def strong_split_repo(strong_coop_split_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _repo(strong_coop_split_bundle, tmp_path_factory, "triton_strong_split")


def test_loop_model_of_a_split_bundle_computes_the_image_share_once(strong_split_repo: Path, strong_repo: Path) -> None:
    """With the split energy graphs the loop calls energy_image once and energy_grad_step every step
    (as sal-runtime does), and answers what the loop over energy_grad answers within 1e-5."""
    repo, split_repo = strong_repo, strong_split_repo
    assert json.loads(_loop_settings(repo))["split_energy"] is False and json.loads(_loop_settings(split_repo))["split_energy"]
    assert {"coop_energy_image", "coop_energy_grad_step"} <= {p.parent.name for p in split_repo.glob("*/config.pbtxt")}
    x = np.random.default_rng(7).standard_normal((2, 3, 64, 64)).astype(np.float32)
    answers = []
    old_calls = [("coop_encoder", 2), ("coop_latent_decoder", 6)] + [("coop_energy_grad", 2)] * 4
    new_calls = [("coop_encoder", 2), ("coop_energy_image", 2), ("coop_latent_decoder", 6)] + [("coop_energy_grad_step", 2)] * 4
    for folder, calls in ((repo, old_calls), (split_repo, new_calls)):
        loop, fake = _load_loop_model(folder, "saliency")
        fake.calls.clear()
        (response,) = loop.execute([fake_triton.Request({"IMAGE": x}, {"samples": 3, "steps": 4, "seed": 5})])
        assert not response.has_error(), response.error().message()
        assert fake.calls == calls
        answers.append({t.name(): t.as_numpy() for t in response.output_tensors})
    for key in ("SALIENCY", "UNCERTAINTY"):
        assert np.abs(answers[0][key] - answers[1][key]).max() <= 1e-5, key


def _loop_settings(repo: Path) -> str:
    config = json_format.MessageToDict(_parse(repo / "saliency" / "config.pbtxt"), preserving_proto_field_name=True)
    return config["parameters"]["salkit_settings"]["string_value"]


@pytest.mark.parametrize("noise", [False, True])
def test_loop_model_over_bls_equals_the_predictor_under_a_strong_energy(strong_repo: Path, strong_coop_bundle: Path,
                                                                         strong_coop_checkpoint: Path, noise: bool) -> None:
    """Same bundle, seed and inputs: the Triton model's answer is sal-runtime's (kernels.coop, the
    seed convention of kernels.coop.random_inputs), on an energy whose descent moves the maps."""
    from salkit.runtime.predictor import Predictor
    from salkit.train.engine.checkpoint import build_model, load_checkpoint

    loop, fake = _load_loop_model(strong_repo, "saliency")
    x = np.random.default_rng(7).standard_normal((2, 3, 64, 64)).astype(np.float32)
    n, k, seed = 3, 5, 11
    fake.calls.clear()
    (response,) = loop.execute([fake_triton.Request({"IMAGE": x}, {"samples": n, "steps": k, "seed": seed, "noise": noise})])
    assert not response.has_error(), response.error().message()
    out = {t.name(): t.as_numpy() for t in response.output_tensors}
    # One encoder pass for the batch, one decoder call for all N·B samples, then the descent on the
    # mean map: one energy_grad call on B rows per step.
    assert fake.calls == [("coop_encoder", 2), ("coop_latent_decoder", 2 * n)] + [("coop_energy_grad", 2)] * k
    with Predictor.from_bundle(strong_coop_bundle, backend="ort-cpu", threads=2) as predictor:
        expected = predictor.predict_tensor(x, samples=n, steps=k, seed=seed, noise=noise)
        start = predictor.predict_tensor(x, samples=n, steps=0, seed=seed, uncertainty=False)["saliency"]
    assert np.abs(expected["saliency"] - start).mean() >= 0.05  # the energy moves the maps
    assert out["SALIENCY"].shape == (2, 1, 64, 64) and out["UNCERTAINTY"].shape == (2, 3, 64, 64)
    assert np.abs(out["SALIENCY"] - expected["saliency"]).max() <= 1e-4
    stacked = np.concatenate([expected[key] for key in ("predictive", "aleatoric", "epistemic")], axis=1)
    assert np.abs(out["UNCERTAINTY"] - stacked).max() <= 1e-4
    if noise:
        return
    # Independent of the ONNX graphs: torch autograd on the checkpoint, same latents.
    model = build_model(load_checkpoint(strong_coop_checkpoint)).eval()
    latents = np.random.default_rng(seed).standard_normal((n, 2, model.latent_dim), dtype=np.float32)
    delta = load_bundle(strong_coop_bundle).coop["langevin_step"]
    reference, _ = cooperative_reference(model.generator, model.energy, x, latents, k, delta)
    assert np.abs(out["SALIENCY"] - reference).max() <= 1e-4
    # What a descent per sample, averaged afterwards, would give: far from the answer (the test tells them apart).
    per_sample = np.mean([cooperative_reference(model.generator, model.energy, x, latents[i : i + 1], k, delta)[0] for i in range(n)], 0)
    assert np.abs(per_sample - reference).max() > 1e-2


def test_loop_model_reports_a_failing_graph_as_a_request_error(coop_repo: Path, tmp_path: Path) -> None:
    loop, _ = _load_loop_model(coop_repo, "saliency")
    loop.prefix = "missing_"
    (response,) = loop.execute([fake_triton.Request({"IMAGE": np.zeros((1, 3, 64, 64), np.float32)})])
    assert response.has_error() and "missing_encoder" in response.error().message()


def test_vendored_kernels_import_from_the_model_folder(coop_repo: Path) -> None:
    folder = coop_repo / "saliency" / "1"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import salkit.kernels.broyden as b, salkit.kernels.entropy;"
            "import salkit.kernels.coop, salkit.kernels.edges, salkit.base.errors as e; print(b.__file__); print(e.__file__)")
    result = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert all(line.startswith(str(folder)) for line in result.stdout.split())
    # Only what the loop imports: the kernels and the error type they raise.
    assert sorted(p.name for p in (folder / "salkit" / "base").iterdir()) == ["__init__.py", "errors.py"]


# What a model of the repository can import inside Triton's Python backend: the standard library,
# numpy, ONNX Runtime (the Python-backend graph model), the backend's utilities, the prelude beside
# it, and the copy of salkit.kernels with salkit.base.errors that _copy_kernels writes.
TRITON_IMPORTS = {"numpy", "onnxruntime", "triton_python_backend_utils", "_salkit_prelude"}
TRITON_SALKIT = ("salkit.kernels", "salkit.base.errors")


def test_the_triton_side_imports_only_what_a_model_folder_holds() -> None:
    import ast

    import salkit.export.triton

    package = Path(salkit.export.triton.__file__).parent
    wrong = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                if path.name == "prelude.py" and top not in sys.stdlib_module_names:  # it runs before numpy is on sys.path
                    wrong.append(f"{path.name}:{node.lineno} imports {name} (standard library only)")
                elif top == "salkit":
                    if not any(name == p or name.startswith(p + ".") for p in TRITON_SALKIT):
                        wrong.append(f"{path.name}:{node.lineno} imports {name}")
                elif top not in TRITON_IMPORTS and top not in sys.stdlib_module_names:
                    wrong.append(f"{path.name}:{node.lineno} imports {name}")
            if isinstance(node, ast.ImportFrom) and node.level:
                wrong.append(f"{path.name}:{node.lineno}: a relative import (the file is copied alone)")
    assert not wrong, wrong


def test_qefpn_repository_and_loop(tiny_qefpn_bundle: Path, tiny_qefpn_checkpoint: Path, tmp_path: Path) -> None:
    from salkit.train.engine.checkpoint import build_model, load_checkpoint

    repo = tmp_path / "repo"
    names = write_triton_repo(load_bundle(tiny_qefpn_bundle), tiny_qefpn_bundle, repo)
    assert sorted(names) == ["qefpn", "qefpn_decoder", "qefpn_encoder", "qefpn_f"]
    for name in names:
        _parse(repo / name / "config.pbtxt")
    loop, _ = _load_loop_model(repo, "qefpn")
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)
    (response,) = loop.execute([fake_triton.Request({"IMAGE": x})])
    assert not response.has_error(), response.error().message()
    out = {t.name(): t.as_numpy() for t in response.output_tensors}
    with torch.no_grad():
        expected = torch.sigmoid(build_model(load_checkpoint(tiny_qefpn_checkpoint)).eval()(torch.from_numpy(x))).numpy()
    assert out["ITERATIONS"].shape == (2,) and out["RESIDUAL"].shape == (2,)
    assert np.abs(out["SALIENCY"] - expected).max() <= 2e-2
    # The runtime's solve (kernels.broyden.solve_fixed, T iterations in float32): the same answer.
    from salkit.runtime.predictor import Predictor

    with Predictor.from_bundle(tiny_qefpn_bundle, backend="ort-cpu", threads=2) as predictor:
        ours = predictor.predict_tensor(x)
    assert np.abs(out["SALIENCY"] - ours["saliency"]).max() <= 1e-4
    assert np.array_equal(out["ITERATIONS"], ours["iterations"])
    np.testing.assert_allclose(out["RESIDUAL"], ours["residual"], rtol=1e-3, atol=1e-6)


def test_cli_passes_the_triton_graph_backend_and_sys_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from salkit.export import bundle_writer
    from salkit.export.cli import main

    seen = {}

    def fake_export(options, progress):
        seen["options"] = options
        raise SalkitError("stop after the options")

    monkeypatch.setattr(bundle_writer, "export_bundle", fake_export)
    args = ["--ckpt", str(tmp_path / "c.pt"), "--out", str(tmp_path / "b"), "--triton-repo", str(tmp_path / "r"),
            "--triton-graph-backend", "python", "--triton-sys-path", "/opt/a", "--triton-sys-path", "/opt/b"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "stop after the options" in result.output
    assert seen["options"].triton_graph_backend == "python" and seen["options"].triton_sys_path == ("/opt/a", "/opt/b")
    default = CliRunner().invoke(main, args[:6])
    assert default.exit_code == 2 and seen["options"].triton_graph_backend == "auto" and seen["options"].triton_sys_path == ()
    bad = CliRunner().invoke(main, [*args[:6], "--triton-graph-backend", "tensorrt"])
    assert bad.exit_code == 2 and "tensorrt" in bad.output


def test_graph_models_carry_the_recorded_precision_choice(untrained_coop_checkpoint: Path, tmp_path: Path) -> None:
    """An int8 choice puts the int8 artefacts into the graph models; openvino configs parse and
    carry the bf16 hint only for a bf16 choice (which compiles the float32 graphs)."""
    import onnx

    from salkit.export.bundle_writer import ExportOptions, export_bundle

    bundle = tmp_path / "bundle"
    export_bundle(ExportOptions(ckpt=untrained_coop_checkpoint, out=bundle, precision="fp32", build_engines=False))
    manifest = load_bundle(bundle)
    stand_in = onnx.load(str(bundle / "encoder.onnx"))
    stand_in.doc_string = "int8 stand-in"  # other bytes, same graph
    onnx.save_model(stand_in, str(bundle / "encoder.int8.onnx"))
    manifest.variants = {"int8": {"encoder": {"file": "encoder.int8.onnx", "sha256": sha256_file(bundle / "encoder.int8.onnx")}}}
    manifest.precision_gate = {"ort-cpu:int8": {"passed": True}}
    manifest.precision_choice = {"plan": "ort-cpu:int8", "cpu": "test"}
    write_triton_repo(manifest, bundle, tmp_path / "r_int8", graph_backend="openvino")
    manifest.precision_choice = {"plan": "openvino:bf16", "cpu": "test"}
    write_triton_repo(manifest, bundle, tmp_path / "r_bf16", graph_backend="openvino")
    model = lambda repo, graph: tmp_path / repo / f"coop_{graph}" / "1" / "model.onnx"
    assert sha256_file(model("r_int8", "encoder")) == manifest.variants["int8"]["encoder"]["sha256"]
    assert sha256_file(model("r_int8", "latent_decoder")) == manifest.graphs["latent_decoder"].sha256
    assert sha256_file(model("r_bf16", "encoder")) == manifest.graphs["encoder"].sha256
    for repo, hint in (("r_int8", False), ("r_bf16", True)):
        config = _parse(tmp_path / repo / "coop_encoder" / "config.pbtxt")
        assert config.backend == "openvino" and config.default_model_filename == "model.onnx"
        assert config.parameters["PERFORMANCE_HINT"].string_value == "LATENCY"
        assert ("HINT_BF16" in config.parameters) is hint
        _assert_graph_io(config, manifest.graphs["encoder"], _model_config_pb2())
