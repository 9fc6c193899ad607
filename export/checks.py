"""Checks every exported graph must pass before a bundle is written.

1. ``onnx.checker`` (full check, with shape inference);
2. the TensorRT operator list (:mod:`salkit.export.trt_ops`);
3. ONNX Runtime against the torch reference on random inputs at two batch sizes and on inputs
   made from real images, when there are some (one image, then all in one batch). The error
   measure is ``max |ort − torch| / max |torch|`` per output (``max_rel_err``), with
   ``max_abs_err`` beside it; both go into the manifest. For ``energy_grad`` the reference is autograd of ``energy``.

Each failure is a :class:`SalkitError` naming the graph, the input set and the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch

from salkit.export.graphs import GraphDef
from salkit.export.trt_ops import check_graph
from salkit.kernels.errors import SalkitError

CHECK_BATCH_SIZES = (1, 3)


def check_onnx_model(path: str | Path, graph_name: str) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise SalkitError(f"graph {graph_name!r} ({path}) fails onnx.checker: {str(err).splitlines()[0]}") from None


def session(path: str | Path, threads: int = 2) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare(graph: GraphDef, sess: ort.InferenceSession, inputs: Sequence[torch.Tensor], label: str,
            tolerance: float | None) -> tuple[float, float]:
    """Run both sides on ``inputs``; return (max_abs_err, max_rel_err), raising above ``tolerance``."""
    feeds = {name: t.detach().cpu().numpy().astype(np.float32) for name, t in zip(graph.input_names, inputs)}
    got = sess.run(list(graph.output_names), feeds)
    with torch.no_grad():
        expected = [t.detach().cpu().numpy() for t in graph.run_reference(*inputs)]
    worst_abs, worst_rel = 0.0, 0.0
    for name, a, b in zip(graph.output_names, got, expected):
        if a.shape != b.shape:
            raise SalkitError(f"graph {graph.name!r} output {name!r} on {label}: ONNX Runtime gives shape "
                              f"{a.shape}, torch {b.shape}")
        if not np.isfinite(a).all():
            raise SalkitError(f"graph {graph.name!r} output {name!r} on {label}: ONNX Runtime gives non-finite values")
        err = float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
        scale = float(np.abs(b).max()) if b.size else 0.0
        rel = err / scale if scale > 0 else err
        if tolerance is not None and rel > tolerance:
            err, rel = _judge_against_float64(graph, inputs, label, name, a, b, err, rel, tolerance)
        worst_abs, worst_rel = max(worst_abs, err), max(worst_rel, rel)
    return worst_abs, worst_rel


# How much further from the float64 truth than torch's own float32 result ONNX Runtime may be.
FLOAT32_NOISE_FACTOR = 4.0


def _judge_against_float64(graph: GraphDef, inputs: Sequence[torch.Tensor], label: str, name: str,
                           got: np.ndarray, expected: np.ndarray, err: float, rel: float,
                           tolerance: float) -> tuple[float, float]:
    """Accept an output whose float32 rounding is no worse than torch's own, else raise; returns
    ONNX Runtime's (max abs, relative) error against the float64 reference, the errors recorded then.

    An output much smaller than the values it is summed from (an energy gradient where the energy
    is nearly flat) carries float32 cancellation noise in *both* implementations; then the two
    differ by more than ``tolerance`` of the output while neither is wrong. The float64
    reference tells them apart: ONNX Runtime passes if it is within ``tolerance`` of the float64
    output or at most ``FLOAT32_NOISE_FACTOR`` times as far from it as torch in float32.
    """
    message = (f"graph {graph.name!r} output {name!r} on {label}: ONNX Runtime differs from the torch "
               f"reference by max abs {err:.3g} (relative {rel:.3g} > tolerance {tolerance:.1g})")
    with torch.no_grad():
        truth = graph.run_reference_float64(*inputs)
    if truth is None:
        raise SalkitError(message)
    exact = truth[list(graph.output_names).index(name)].detach().cpu().numpy()
    ort_err = float(np.abs(got.astype(np.float64) - exact).max())
    torch_err = float(np.abs(expected.astype(np.float64) - exact).max())
    scale = float(np.abs(exact).max())
    if ort_err > max(tolerance * scale, FLOAT32_NOISE_FACTOR * torch_err):
        raise SalkitError(f"{message}; against float64 ONNX Runtime is off by {ort_err:.3g}, torch float32 by {torch_err:.3g}")
    return ort_err, ort_err / scale if scale > 0 else ort_err


def validate_graph(graph: GraphDef, path: str | Path, *, tolerance: float | None = None,
                   batch_sizes: Sequence[int] = CHECK_BATCH_SIZES, seed: int = 0,
                   enforce_on_random: bool = True, tensorrt_ops: bool = True) -> dict[str, float]:
    """All checks for one exported graph; returns the manifest's ``validation`` entry.

    ``enforce_on_random=False`` records the random-input errors without failing on them: an
    int8 graph is calibrated for images, not for Gaussian noise, and is judged on images only.
    ``tensorrt_ops=False`` skips the TensorRT operator check (CPU-only U8S8 int8 graphs, whose
    float32 originals passed it).
    """
    check_onnx_model(path, graph.name)
    if tensorrt_ops:
        check_graph(onnx.load(str(path)), graph.name)
    tolerance = graph.tolerance if tolerance is None else tolerance
    sess = session(path)
    generator = torch.Generator().manual_seed(seed)
    errors: dict[str, float] = {}
    worst_abs, worst_rel = 0.0, 0.0
    for b in batch_sizes:
        a, r = compare(graph, sess, graph.random_inputs(b, generator), f"random inputs, batch {b}",
                       tolerance if enforce_on_random else None)
        worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
    errors["random_max_abs_err"], errors["random_max_rel_err"] = worst_abs, worst_rel
    if graph.data_inputs is not None:
        n = graph.data_inputs[0].shape[0]
        data_abs, data_rel = 0.0, 0.0
        for b in sorted({1, n}):  # one image alone, then all of them in one batch
            a, r = compare(graph, sess, tuple(t[:b] for t in graph.data_inputs), f"{b} dataset image(s)", tolerance)
            data_abs, data_rel = max(data_abs, a), max(data_rel, r)
        errors["data_max_abs_err"], errors["data_max_rel_err"] = data_abs, data_rel
        worst_abs, worst_rel = max(worst_abs, data_abs), max(worst_rel, data_rel)
    errors["max_abs_err"], errors["max_rel_err"] = worst_abs, worst_rel
    errors["tolerance"] = float(tolerance)
    errors["batch_sizes_checked"] = float(len(batch_sizes))
    return errors
