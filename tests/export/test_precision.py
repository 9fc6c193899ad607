"""Reduced precision in the ONNX graphs: fp16 conversion and calibrated static int8 Q/DQ."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from salkit.base.errors import SalkitError
from salkit.export.bundle_writer import ExportOptions, export_bundle
from salkit.export.onnx_io import export_module
from salkit.export.precision.artefacts import to_fp16, to_int8
from salkit.export.trt_ops import check_graph
from salkit.runtime.bundle import load_bundle
from tests.export.tiny_modules import TinyEnergy

torch.set_num_threads(2)


def test_fp16_graph_keeps_float32_io_and_matches_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = TinyEnergy().eval()
    args = (torch.randn(2, 1, 32, 32), torch.randn(2, 3, 32, 32))
    export_module(module, args, tmp_path / "e.onnx", input_names=("saliency", "image"), output_names=("energy",))
    to_fp16(tmp_path / "e.onnx", tmp_path / "e16.onnx")
    model = onnx.load(str(tmp_path / "e16.onnx"))
    onnx.checker.check_model(model, full_check=True)
    check_graph(model, "e16")
    conv_weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.dims and len(t.dims) == 4]
    assert conv_weights and all(w.dtype == np.float16 for w in conv_weights)
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in (*model.graph.input, *model.graph.output))
    x = (torch.randn(3, 1, 32, 32), torch.randn(3, 3, 32, 32))
    got = ort.InferenceSession(str(tmp_path / "e16.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"saliency": x[0].numpy(), "image": x[1].numpy()})[0]
    with torch.no_grad():
        expected = module(*x).numpy()
    rel = np.abs(got - expected).max() / np.abs(expected).max()
    assert 0 < rel <= 1e-2  # really reduced (not bit-equal), still close


def _quantized_types(model: onnx.ModelProto) -> set[int]:
    """Element types of the zero points of every QuantizeLinear (what the activations become)."""
    inits = {t.name: t for t in model.graph.initializer}
    return {inits[n.input[2]].data_type for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2}


def _weight_extent(model: onnx.ModelProto) -> int:
    """Largest |q| of the int8 weight initializers."""
    return max(int(np.abs(numpy_helper.to_array(t).astype(np.int32)).max()) for t in model.graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2)


def test_int8_schemes_tensorrt_symmetric_and_cpu_uint8(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = TinyEnergy().eval()
    args = (torch.randn(2, 1, 32, 32), torch.randn(2, 3, 32, 32))
    export_module(module, args, tmp_path / "e.onnx", input_names=("saliency", "image"), output_names=("energy",))
    feeds = [{"saliency": torch.randn(1, 1, 32, 32).numpy(), "image": torch.randn(1, 3, 32, 32).numpy()} for _ in range(4)]
    to_int8(tmp_path / "e.onnx", tmp_path / "trt.onnx", feeds, "tensorrt")
    to_int8(tmp_path / "e.onnx", tmp_path / "cpu.onnx", feeds, "cpu")
    to_int8(tmp_path / "e.onnx", tmp_path / "cpu7.onnx", feeds, "cpu7")
    trt_model, cpu_model = onnx.load(str(tmp_path / "trt.onnx")), onnx.load(str(tmp_path / "cpu.onnx"))
    cpu7_model = onnx.load(str(tmp_path / "cpu7.onnx"))
    assert _quantized_types(cpu7_model) == {onnx.TensorProto.UINT8}
    # 7-bit weights (no saturating int16 pair sums without VNNI) against the full 8 bits.
    assert _weight_extent(cpu7_model) <= 64 < _weight_extent(cpu_model) <= 127
    assert _quantized_types(trt_model) == {onnx.TensorProto.INT8}
    assert _quantized_types(cpu_model) == {onnx.TensorProto.UINT8}
    assert "QuantizeLinear" in check_graph(trt_model, "trt")  # zero points 0: TensorRT explicit quantization
    with pytest.raises(SalkitError, match="zero"):
        check_graph(cpu_model, "cpu")  # why U8S8 bundles are recorded as not TensorRT-importable


class _ResidualUpsample(torch.nn.Module):
    """conv → + input → 2× bilinear upsampling → conv: the decoder's shapes of operators in small."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv1(x)) + x
        return self.conv2(torch.nn.functional.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=True))


MATRIX_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}


def test_int8_cpu_schemes_quantize_the_matrix_operators_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = _ResidualUpsample().eval()
    export_module(module, (torch.randn(2, 4, 16, 16),), tmp_path / "d.onnx", input_names=("x",), output_names=("y",))
    feeds = [{"x": torch.randn(1, 4, 16, 16).numpy()} for _ in range(8)]

    def between_other_operators(path: Path) -> set[tuple[str, str]]:
        """(producer, consumer) of every activation rounded to int8 (Q → DQ) that no matrix operator
        produces or reads: the roundings the CPU schemes leave out."""
        nodes = onnx.load(str(path)).graph.node
        producer = {o: n.op_type for n in nodes for o in n.output}
        pairs = set()
        for q in (n for n in nodes if n.op_type == "QuantizeLinear"):
            dqs = [n.output[0] for n in nodes if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0]]
            consumers = {n.op_type for n in nodes if set(dqs) & set(n.input)}
            made = producer.get(q.input[0], "input")
            if made not in MATRIX_OPS and not consumers & MATRIX_OPS:
                pairs |= {(made, c) for c in consumers}
        return pairs

    for scheme in ("cpu", "cpu7"):
        to_int8(tmp_path / "d.onnx", tmp_path / f"{scheme}.onnx", feeds, scheme)
        assert between_other_operators(tmp_path / f"{scheme}.onnx") == set()
        x = torch.from_numpy(feeds[0]["x"])  # inside the calibrated range
        got = ort.InferenceSession(str(tmp_path / f"{scheme}.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
        with torch.no_grad():
            expected = module(x).numpy()
        assert 0 < np.abs(got - expected).max() / np.abs(expected).max() <= 0.05  # quantized, still close
    to_int8(tmp_path / "d.onnx", tmp_path / "trt.onnx", feeds, "tensorrt")
    assert between_other_operators(tmp_path / "trt.onnx")  # TensorRT's placement is unchanged (here: Add → Resize)


SHARED_PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pascal-s"


# Stand-in predict times of every plan export may time (a plan missing here is a KeyError, not a guess).
PLAN_SECONDS = {"ort-cpu:fp32": 1.0, "openvino:fp32": 1.1, "ort-cpu:int8": 0.5, "openvino:int8": 0.6, "openvino:bf16": 0.7,
                "auto:mix": 2.0}  # a per-graph mix, where one passes, is slower than every single plan: not kept


def _fast_timers(monkeypatch, simulated_cpu) -> None:
    """Timers that call int8 twice as fast: tiny graphs time nothing real, the gate stays real. The
    CPU is fixed too (AVX-512 with VNNI, no bf16): which plans are candidates must not depend on it."""
    from salkit.export.precision import auto as precision_auto

    simulated_cpu("avx512")
    monkeypatch.setattr(precision_auto, "time_graphs", lambda paths, feeds: [0.5 if ".int8." in p.name else 1.0 for p in paths])
    monkeypatch.setattr(precision_auto, "time_plans", lambda plans, x: [PLAN_SECONDS[f"{b}:{p}"] for _, b, p in plans])
    # every graph alone as fast as its plan: each graph's fastest is the same plan, so no per-graph mix
    monkeypatch.setattr(precision_auto, "time_graph_plans", lambda m, graph, plans, feeds: [PLAN_SECONDS[p] for p in plans])


def _recheck_recorded_plans(manifest, calib: Path) -> None:
    """Every plan the bundle may use is re-judged here, independently of the gate's code: the
    runtime's maps with the recorded artefacts against its float32 maps, on the held photographs."""
    from salkit.export.precision.calib import load_calibration
    from salkit.runtime.predictor import Predictor

    held = load_calibration(calib, manifest.input_size, manifest.mean, manifest.std, 16, 8).held
    # Plans named, not auto: a timed probe could otherwise make the reference int8 too.
    with Predictor(manifest, backend="ort-cpu", precision="fp32") as ref_predictor:
        ref = ref_predictor.predict_tensor(held, seed=0)
    for precision in manifest.variants:
        assert manifest.gate_passed(f"ort-cpu:{precision}"), manifest.precision_gate
        with Predictor(manifest.at_precision(precision), backend="ort-cpu", precision="fp32") as predictor:
            got = predictor.predict_tensor(held, seed=0)
        delta = np.abs(got["saliency"] - ref["saliency"])
        assert delta.mean() <= 0.003 and delta.max() <= 0.05
        for key in ("predictive", "aleatoric", "epistemic"):
            assert np.abs(got[key] - ref[key]).mean() <= 0.01


def _int8_auto_bundle(tmp_path: Path, checkpoint: Path, calib: Path, monkeypatch, simulated_cpu):
    _fast_timers(monkeypatch, simulated_cpu)
    out = tmp_path / "auto"
    export_bundle(ExportOptions(ckpt=checkpoint, out=out, calib=calib, build_engines=False))
    manifest = load_bundle(out)
    verdict = manifest.precision_gate["ort-cpu:int8"]
    if manifest.variants:  # what passed: a calibrated int8 artefact with its element-wise record
        assert verdict["passed"] and verdict["saliency_max_abs"] <= 0.05 and manifest.chosen_plan() == ("ort-cpu", "int8")
        for entry in manifest.variants["int8"].values():
            model = onnx.load(str(manifest.root / entry["file"]))
            assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
            assert _quantized_types(model) == {onnx.TensorProto.UINT8}
            assert 0 < entry["validation"]["data_max_rel_err"]
    else:  # nothing passed: the culprits were dropped one by one, each with its numbers
        assert not verdict["passed"] and manifest.chosen_plan() == ("ort-cpu", "fp32")
        assert "fails the gate" in str(verdict) and not list(manifest.root.glob("*.int8.onnx"))
    _recheck_recorded_plans(manifest, calib)
    return manifest


def test_int8_auto_records_only_what_passes_the_final_maps(tmp_path: Path, untrained_coop_checkpoint: Path,
                                                           synthetic_dataset: Path, monkeypatch, simulated_cpu) -> None:
    manifest = _int8_auto_bundle(tmp_path, untrained_coop_checkpoint, synthetic_dataset, monkeypatch, simulated_cpu)
    images = manifest.extra["precision_images"]
    assert images["calibration_images"] == 12 and images["gate_overlaps_calibration"] is True  # 12 images only
    assert manifest.graphs["energy"].file == "energy.onnx" and "generator" not in manifest.variants.get("int8", {})


def test_int8_on_real_photographs_uses_the_training_split_only(tmp_path: Path, untrained_coop_checkpoint: Path,
                                                               monkeypatch, simulated_cpu) -> None:
    if not SHARED_PHOTOS.is_dir():
        pytest.skip(f"real photographs not present ({SHARED_PHOTOS}: the shared data folder is absent)")
    manifest = _int8_auto_bundle(tmp_path, untrained_coop_checkpoint, SHARED_PHOTOS, monkeypatch, simulated_cpu)
    images = manifest.extra["precision_images"]
    assert "train.txt" in images["source"] and images["gate_overlaps_calibration"] is False
    assert (images["calibration_images"], images["gate_images"]) == (16, 24)


def test_calibration_files_follow_the_training_split(tmp_path: Path, synthetic_dataset: Path) -> None:
    from salkit.export.precision.calib import calibration_files

    root = tmp_path / "data"
    shutil.copytree(synthetic_dataset, root)
    stems = sorted(p.stem for p in (root / "img").iterdir())
    (root / "train.txt").write_text("\n".join(stems[5:1:-1]) + "\n")  # four ids, in the file's order
    (root / "test.txt").write_text("\n".join(stems[:2]) + "\n")
    files, source = calibration_files(root)
    assert [f.stem for f in files] == stems[5:1:-1] and "train.txt: 4 of 4 ids" in source


def test_qefpn_auto_judges_the_maps_and_the_residual(tmp_path: Path, tiny_qefpn_checkpoint: Path,
                                                     synthetic_dataset: Path, monkeypatch, simulated_cpu) -> None:
    _fast_timers(monkeypatch, simulated_cpu)
    out = tmp_path / "qefpn"
    export_bundle(ExportOptions(ckpt=tiny_qefpn_checkpoint, out=out, calib=synthetic_dataset, build_engines=False))
    manifest = load_bundle(out)
    verdict = manifest.precision_gate["ort-cpu:int8"]
    if not verdict["reason"].endswith("no graph left in int8"):  # the last judgement: maps and residual
        assert verdict["residual_limit"] >= 2 * verdict["residual_fp32"] - 1e-12
        assert verdict["passed"] == (verdict["saliency_max_abs"] <= 0.05 and verdict["saliency_mean_abs"] <= 0.003
                                     and verdict["residual"] <= verdict["residual_limit"])
    for dropped in verdict["dropped"].values():  # timed as paying, so only the gate drops graphs
        assert "fails the gate" in dropped
    assert set(manifest.variants.get("int8", {})) <= {"encoder", "decoder", "f"}
    if manifest.variants:
        assert manifest.chosen_plan() == ("ort-cpu", "int8") and verdict["passed"]


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed")
def test_an_artefact_is_timed_on_its_fastest_engine(tmp_path: Path, monkeypatch) -> None:
    """Whether an int8 artefact pays is decided on the engine that runs it fastest: each file's time
    is its best over ONNX Runtime and OpenVINO, and an engine that cannot run a file is no time for it."""
    from salkit.export.precision import auto as precision_auto
    from salkit.runtime.backends.openvino import OpenVinoRunner

    module = _ResidualUpsample().eval()
    for name in ("a", "b"):
        export_module(module, (torch.randn(1, 4, 16, 16),), tmp_path / f"{name}.onnx", input_names=("x",), output_names=("y",))
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 4, 16, 16), dtype=np.float32)}
    paths = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    monkeypatch.setattr(precision_auto, "openvino_reason", lambda manifest=None: "")
    # Stand-in times by call order: ONNX Runtime a, b, then OpenVINO a, b (the real calls run once each).
    stand_in = [1.0, 1.0, 2.0, 0.5]
    monkeypatch.setattr(precision_auto, "best_interleaved", lambda calls, repeats: [stand_in[i] for i, _ in enumerate(calls)])
    assert precision_auto.time_graphs(paths, feeds) == [1.0, 0.5]

    real_load = OpenVinoRunner.load

    def load_refusing_b(self):
        if self.path.name == "b.onnx":
            raise SalkitError("graph 'b': OpenVINO cannot compile it")
        return real_load(self)

    monkeypatch.setattr(OpenVinoRunner, "load", load_refusing_b)
    stand_in = [1.0, 1.0, 0.25]  # ONNX Runtime a, b, OpenVINO a
    assert precision_auto.time_graphs(paths, feeds) == [0.25, 1.0]


def test_each_plan_is_timed_at_the_precision_it_names(monkeypatch) -> None:
    """time_plans names every plan's precision to the runtime: left to auto, "openvino:fp32" had run the
    engine's fastest plan (int8 on a CPU with int8 units) and fp32 was recorded as fast as int8."""
    import salkit.runtime.predictor as predictor_module
    from salkit.export.precision.auto import time_plans

    made = []

    class Recorder:
        def __init__(self, manifest, backend="auto", precision="auto", threads=None, *, fallback=True, **options):
            made.append((backend, precision, fallback))

        def predict_tensor(self, x, seed=0):
            return {}

        def close(self):
            pass

    monkeypatch.setattr(predictor_module, "Predictor", Recorder)
    plans = [(None, "ort-cpu", "fp32"), (None, "openvino", "fp32"), (None, "openvino", "int8"), (None, "openvino", "bf16"),
             (None, "auto", "mix")]
    seconds = time_plans(plans, np.zeros((1, 3, 8, 8), np.float32))
    assert len(seconds) == len(plans) and all(t >= 0 for t in seconds)
    assert set(made) == {(b, p, False) for _, b, p in plans}
