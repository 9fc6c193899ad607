"""Lower-precision ONNX artefacts written *beside* the float32 graphs (the reference, always kept):
``<graph>.<precision>.onnx``, recorded in the manifest's ``variants`` (:mod:`salkit.runtime.bundle`).
Whether a plan may use them is not decided here but by the precision gate on the final maps
(:mod:`salkit.export.precision.gate`); what is recorded here per artefact is element-wise: its
difference to the float32 graph on the calibration images and on random inputs.

* ``fp16``: weights and activations in float16, graph inputs/outputs kept float32 (the runtime's
  buffers do not change), via ONNX Runtime's float16 converter.
* ``int8``: static Q/DQ by ONNX Runtime, calibrated on real images, per-channel symmetric int8
  weights and one of the activation schemes of :data:`INT8_SCHEMES`: ``tensorrt`` — symmetric
  int8 activations, every zero point 0, as TensorRT's explicit quantization requires; ``cpu`` —
  asymmetric uint8 activations (U8S8), the form ONNX Runtime's x86 kernels run fast; ``cpu7`` —
  the same with 7-bit weights (``reduce_range``) for CPUs without an int8 dot-product unit
  (AVX2 only: ``vpmaddubsw`` adds two u8·s8 products into a saturating int16, which 8-bit
  weights overflow; docs/export.md has the numbers measured on an AMD EPYC).

  The CPU schemes quantize the matrix operators only (:data:`CPU_QUANTIZED_OPS`): additions,
  upsamplings, concatenations and activations stay float32 between them. Quantizing those too
  (ONNX Runtime's default) put the Lite0 latent decoder's maps past the gate on real photographs
  (saliency max |Δ| 0.060–0.085 > 0.05) with no single layer to blame (each convolution back in
  float32 alone left 0.054–0.064); with the matrix operators alone it passes (0.040–0.048), and
  OpenVINO still runs it in int8 at 2.1× its float32 speed.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch

from salkit.base.errors import SalkitError
from salkit.export.graphs import GraphDef
from salkit.export.onnx_io import MAX_IR_VERSION
from salkit.runtime.bundle import Manifest, sha256_file

# Which graphs are quantized is the model kind's (salkit.export.kinds): ExportKind.reduced_graphs
# when a precision is forced; the automatic choice also tries candidate_graphs, the others that
# carry the FLOPs (energy_grad, QE-FPN's f), and keeps them only where they pay and pass the gate.
ARTEFACT_PRECISIONS = ("fp16", "int8")
INT8_SCHEMES = ("tensorrt", "cpu", "cpu7")
CPU_QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _strip_unused_opsets(model: onnx.ModelProto) -> None:
    """quant_pre_process declares every domain it knows; keep the ones nodes use (TensorRT reads them)."""
    used = {node.domain for node in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used or (o.domain == "ai.onnx" and "" in used)]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)


def _toposort(graph: onnx.GraphProto) -> None:
    """Order nodes so each comes after its producers (the float16 converter appends its Casts)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise AssertionError(f"graph {graph.name!r} has a cycle or a dangling input")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if all(n is not r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)


def _unshare_weights(model: onnx.ModelProto) -> None:
    """Give every consumer of a shared weight its own copy. energy_grad's Conv and its
    ConvTranspose (the VJP) read one weight, whose per-channel axes differ (0 vs 1): one set of
    scales cannot serve both, and the quantizer fails on the bias of the first."""
    inits = {t.name: t for t in model.graph.initializer}
    seen: set[str] = set()
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name not in inits or len(inits[name].dims) < 2:
                continue
            if name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[name])
                copy.name = f"{name}__{node.name or node.op_type}_{i}"
                model.graph.initializer.append(copy)
                node.input[i] = copy.name
            seen.add(name)


def to_fp16(src: Path, dst: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _toposort(model.graph)
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.save_model(model, str(dst))


def to_int8(src: Path, dst: Path, feeds: Sequence[dict[str, np.ndarray]], scheme: str = "tensorrt") -> None:
    if scheme not in INT8_SCHEMES:
        raise SalkitError(f"unknown int8 scheme {scheme!r} (choose from {', '.join(INT8_SCHEMES)})")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as work, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        _unshare_weights(model)
        onnx.save_model(model, str(prepared))
        symmetric = scheme == "tensorrt"
        # TensorRT keeps its Q/DQ placement everywhere (it fuses them into its int8 kernels).
        op_types = None if symmetric else list(CPU_QUANTIZED_OPS)
        quantize_static(str(prepared), str(Path(work) / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, reduce_range=scheme == "cpu7",
                        op_types_to_quantize=op_types,
                        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True})
        model = onnx.load(str(Path(work) / "q.onnx"))
    _strip_unused_opsets(model)
    onnx.save_model(model, str(dst))




def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def calibration_feeds(graph: GraphDef) -> list[dict[str, np.ndarray]]:
    """One calibration feed per image: the graph's dataset inputs split along the batch."""
    inputs = graph.data_inputs
    if inputs is None:
        raise SalkitError(f"graph {graph.name!r} has no images to calibrate on (--calib DIR)")
    feeds = graph.feeds(*inputs)
    return [{name: t[i : i + 1].detach().numpy().astype(np.float32) for name, t in zip(graph.input_names, feeds, strict=True)}
            for i in range(inputs[0].shape[0])]


def elementwise_delta(graph: GraphDef, fp32_path: Path, reduced_path: Path) -> dict[str, float]:
    """Reduced vs float32 graph, element-wise: ``max |Δ| / max |fp32|`` on the images (``data_``)
    and on random inputs (``random_``), and for logits the probability error. A record, not a
    verdict: bf16 moves energy_grad by 15 % element-wise and the final maps by 0.0025."""
    sets = {"random": graph.random_inputs(2, torch.Generator().manual_seed(0))}
    if graph.data_inputs is not None:
        sets["data"] = graph.data_inputs
    ref_sess, got_sess = _session(fp32_path), _session(reduced_path)
    delta: dict[str, float] = {}
    for label, inputs in sets.items():
        feeds = {name: t.detach().numpy().astype(np.float32) for name, t in zip(graph.input_names, graph.feeds(*inputs), strict=True)}
        ref = ref_sess.run(list(graph.output_names), feeds)
        got = got_sess.run(list(graph.output_names), feeds)
        for b in got:
            if not np.isfinite(b).all():
                raise SalkitError(f"graph {graph.name!r}: its reduced-precision artefact {reduced_path.name} gives "
                                  f"non-finite values on {label} inputs")
        delta[f"{label}_max_rel_err"] = max(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)) for a, b in zip(ref, got, strict=True))
        delta[f"{label}_max_abs_err"] = max(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True))
        if graph.output_names == ("logits",):
            p_ref, p_got = 1 / (1 + np.exp(-ref[0])), 1 / (1 + np.exp(-got[0]))
            delta[f"{label}_prob_mae"] = float(np.abs(p_ref - p_got).mean())
            delta[f"{label}_prob_max_abs"] = float(np.abs(p_ref - p_got).max())
    return delta


def write_variant(manifest: Manifest, graph: GraphDef, directory: Path, precision: str, scheme: str = "cpu") -> Path:
    """Write ``<graph>.<precision>.onnx`` beside the float32 graph and record it in ``variants``."""
    from salkit.export.trt_ops import check_graph

    if precision not in ARTEFACT_PRECISIONS:
        raise SalkitError(f"precision {precision!r} has no ONNX artefact (artefacts: {', '.join(ARTEFACT_PRECISIONS)})")
    source = directory / manifest.graphs[graph.name].file
    target = directory / f"{graph.name}.{precision}.onnx"
    if precision == "fp16":
        to_fp16(source, target)
    else:
        to_int8(source, target, calibration_feeds(graph), scheme)
    try:
        onnx.checker.check_model(str(target), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise SalkitError(f"graph {graph.name!r}: its {precision} artefact fails onnx.checker: {str(err).splitlines()[0]}") from None
    if precision == "fp16" or scheme == "tensorrt":
        check_graph(onnx.load(str(target)), f"{graph.name} ({precision})")
    validation = elementwise_delta(graph, source, target)
    manifest.variants.setdefault(precision, {})[graph.name] = {
        "file": target.name, "sha256": sha256_file(target), "validation": validation}
    return target


def drop_variant(manifest: Manifest, directory: Path, precision: str, graph: str) -> None:
    """Remove an artefact that did not pay or did not pass (file and entry)."""
    entry = manifest.variants.get(precision, {}).pop(graph, None)
    if entry is not None:
        (directory / entry["file"]).unlink(missing_ok=True)
    if precision in manifest.variants and not manifest.variants[precision]:
        del manifest.variants[precision]
