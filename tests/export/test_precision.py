"""Reduced precision in the ONNX graphs: fp16 conversion and calibrated static int8 Q/DQ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from salkit.export.bundle_writer import ExportOptions, export_bundle
from salkit.export.onnx_io import export_module
from salkit.export.precision import to_fp16, to_int8
from salkit.export.trt_ops import check_graph
from salkit.kernels.errors import SalkitError
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


def test_int8_schemes_tensorrt_symmetric_and_cpu_uint8(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = TinyEnergy().eval()
    args = (torch.randn(2, 1, 32, 32), torch.randn(2, 3, 32, 32))
    export_module(module, args, tmp_path / "e.onnx", input_names=("saliency", "image"), output_names=("energy",))
    feeds = [{"saliency": torch.randn(1, 1, 32, 32).numpy(), "image": torch.randn(1, 3, 32, 32).numpy()} for _ in range(4)]
    to_int8(tmp_path / "e.onnx", tmp_path / "trt.onnx", feeds, "tensorrt")
    to_int8(tmp_path / "e.onnx", tmp_path / "cpu.onnx", feeds, "cpu")
    trt_model, cpu_model = onnx.load(str(tmp_path / "trt.onnx")), onnx.load(str(tmp_path / "cpu.onnx"))
    assert _quantized_types(trt_model) == {onnx.TensorProto.INT8}
    assert _quantized_types(cpu_model) == {onnx.TensorProto.UINT8}
    assert "QuantizeLinear" in check_graph(trt_model, "trt")  # zero points 0: TensorRT explicit quantization
    with pytest.raises(SalkitError, match="zero"):
        check_graph(cpu_model, "cpu")  # why U8S8 bundles are recorded as not TensorRT-importable


def test_int8_bundle_is_calibrated_and_records_its_accuracy(tmp_path: Path, untrained_coop_checkpoint: Path,
                                                                      synthetic_dataset: Path) -> None:
    out = tmp_path / "int8"
    export_bundle(ExportOptions(ckpt=untrained_coop_checkpoint, out=out, precision="int8", calib=synthetic_dataset,
                                build_engines=False))
    manifest = load_bundle(out)
    assert manifest.precision == "int8"
    # No TensorRT/GPU here: "auto" picks the fast ONNX Runtime CPU scheme and says so.
    assert manifest.extra["int8_scheme"] == "cpu" and manifest.extra["tensorrt_importable"] is False
    assert manifest.extra["graph_precision"] == {"encoder": "int8", "latent_decoder": "int8", "generator": "int8",
                                                 "energy": "fp32", "energy_grad": "fp32"}
    deltas = manifest.extra["accuracy_delta_vs_fp32"]
    for name in ("encoder", "latent_decoder", "generator"):
        model = onnx.load(str(manifest.graph_path(name)))
        assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
        assert _quantized_types(model) == {onnx.TensorProto.UINT8}
        assert 0 < deltas[name]["delta_max_rel_err"] <= 0.15
        assert manifest.graphs[name].validation["data_max_rel_err"] <= 0.15
    assert 0 < deltas["generator"]["delta_prob_mae"] <= 0.02
    assert manifest.graphs["energy_grad"].validation["max_rel_err"] <= 1e-4
    # ONNX Runtime runs the int8 generator on an image batch of another size than calibration used.
    sess = ort.InferenceSession(str(manifest.graph_path("generator")), providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {"image": np.zeros((5, 3, 64, 64), np.float32), "latent": np.zeros((5, 8), np.float32)})[0]
    assert logits.shape == (5, 1, 64, 64) and np.isfinite(logits).all()
