"""Checks every exported graph must pass before a bundle is written.

1. ``onnx.checker`` (full check, with shape inference);
2. the TensorRT operator list (:mod:`salkit.export.trt_ops`);
3. ONNX Runtime against the torch reference on random inputs at two batch sizes and on inputs
   made from real images, when there are some (one image, then all in one batch).

How (3) decides, and why it never leans on how close torch's own float32 result happens to be:

* **Smooth graphs** (everything but a gradient): ``max |ort − torch| / max |torch| ≤ tolerance``.
  An output much smaller than the values summed into it carries float32 rounding noise in every
  implementation; when the first test fails, ONNX Runtime is judged against the float64 reference
  instead, and passes if it is within ``tolerance`` of it or within the float32 rounding noise
  *of the function at that input*, estimated by Monte Carlo arithmetic
  (:mod:`salkit.export.float_noise`) — not by torch float32's distance from float64, which is one
  lucky or unlucky draw.
* **Gradient graphs** (``energy_grad``; :mod:`salkit.export.grad_check`): the gradient of a ReLU
  net is discontinuous, and each pre-activation within float32 rounding of 0 may take either side
  of its mask in any float32 implementation. Element-wise, ONNX Runtime must be within
  ``tolerance · max |g₆₄|`` of the float64 autograd gradient ``g₆₄`` *plus* the mask-flip envelope
  (what flipping those ambiguous units can change; 0 away from them). Independently of any torch
  gradient, its directional derivatives along itself and along ``g₆₄`` must match central finite
  differences of the exported ``energy`` graph, run in float64, within
  ``DIRECTIONAL_TOLERANCE · ‖g‖`` — which bounds the relative ℓ2 error by ~√(2·1e-2) whatever
  the masks did (on the first case of each input set: four float64 energy evaluations a sample).
  A flip passes both rules; a wrong graph (transposed kernel, missing mask, sign error) fails
  both. The rule this replaces (torch float32, then "at most 4× torch float32's distance from
  float64") refused valid one-step paper models whenever torch float32 happened to flip no unit
  and ONNX Runtime one.

The ``validation`` record (manifest) holds, per input set (``random_``, ``data_``) and overall:
``max_rel_err`` — the error the tolerance is applied to (for a gradient: the part the mask-flip
envelope does not explain, relative to ``max |g₆₄|``) — and ``max_abs_err``; for a gradient also
``raw_max_rel_err`` (against float64, flips included), ``flip_units`` (ambiguous ReLU units over all inputs checked),
``flip_elements`` (fraction of gradient elements where the envelope exceeds the tolerance) and
``directional_rel_err``. Each failure is a one-line :class:`SalkitError` naming the graph, the
input set and the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch

from salkit.base.errors import SalkitError
from salkit.export.graphs import GraphDef
from salkit.export.trt_ops import check_graph

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


def _feeds(graph: GraphDef, inputs: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: t.detach().cpu().numpy().astype(np.float32) for name, t in zip(graph.input_names, graph.feeds(*inputs), strict=True)}


def _checked_outputs(graph: GraphDef, got: Sequence[np.ndarray], shapes: Sequence[tuple[int, ...]],
                     label: str) -> None:
    for name, a, shape in zip(graph.output_names, got, shapes, strict=True):
        if a.shape != tuple(shape):
            raise SalkitError(f"graph {graph.name!r} output {name!r} on {label}: ONNX Runtime gives shape "
                              f"{a.shape}, torch {tuple(shape)}")
        if not np.isfinite(a).all():
            raise SalkitError(f"graph {graph.name!r} output {name!r} on {label}: ONNX Runtime gives non-finite values")


def compare(graph: GraphDef, sess: ort.InferenceSession, inputs: Sequence[torch.Tensor], label: str,
            tolerance: float | None) -> tuple[float, float]:
    """A smooth graph on ``inputs``: (max_abs_err, max_rel_err), raising above ``tolerance``."""
    got = sess.run(list(graph.output_names), _feeds(graph, inputs))
    with torch.no_grad():
        expected = [t.detach().cpu().numpy() for t in graph.run_reference(*inputs)]
    _checked_outputs(graph, got, [b.shape for b in expected], label)
    worst_abs, worst_rel = 0.0, 0.0
    for name, a, b in zip(graph.output_names, got, expected, strict=True):
        err = float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
        scale = float(np.abs(b).max()) if b.size else 0.0
        rel = err / scale if scale > 0 else err
        if tolerance is not None and rel > tolerance:
            err, rel = _judge_against_float64(graph, inputs, label, name, a, b, err, rel, tolerance)
        worst_abs, worst_rel = max(worst_abs, err), max(worst_rel, rel)
    return worst_abs, worst_rel


def _judge_against_float64(graph: GraphDef, inputs: Sequence[torch.Tensor], label: str, name: str,
                           got: np.ndarray, expected: np.ndarray, err: float, rel: float,
                           tolerance: float) -> tuple[float, float]:
    """Accept an output within ``tolerance`` of the float64 reference or within the function's own
    float32 rounding noise there (× the accumulation allowance), else raise; returns ONNX
    Runtime's (max abs, relative) error against float64, the errors then recorded."""
    from salkit.export.float_noise import ACCUMULATION_FACTOR, float32_noise

    message = (f"graph {graph.name!r} output {name!r} on {label}: ONNX Runtime differs from the torch "
               f"reference by max abs {err:.3g} (relative {rel:.3g} > tolerance {tolerance:.1g})")
    fn = graph.reference or graph.module
    if not isinstance(fn, torch.nn.Module):
        raise SalkitError(message)
    index = list(graph.output_names).index(name)
    exact_outputs, noise = float32_noise(fn, inputs)
    exact = exact_outputs[index].detach().cpu().numpy()
    ort_err = float(np.abs(got.astype(np.float64) - exact).max())
    torch_err = float(np.abs(expected.astype(np.float64) - exact).max())
    scale = float(np.abs(exact).max())
    allowed = max(tolerance * scale, ACCUMULATION_FACTOR * noise[index])
    if ort_err > allowed:
        raise SalkitError(f"{message}; against float64 ONNX Runtime is off by {ort_err:.3g} > {allowed:.3g} allowed "
                          f"(float32 rounding noise of the function there {noise[index]:.3g}; torch float32 is off by "
                          f"{torch_err:.3g})")
    return ort_err, ort_err / scale if scale > 0 else ort_err


def validate_graph(graph: GraphDef, path: str | Path, *, tolerance: float | None = None,
                   batch_sizes: Sequence[int] = CHECK_BATCH_SIZES, seed: int = 0,
                   enforce_on_random: bool = True, tensorrt_ops: bool = True) -> dict[str, float]:
    """All checks for one exported graph; returns the manifest's ``validation`` entry.

    ``enforce_on_random=False`` records the random-input errors without failing on them: an
    int8 graph is calibrated for images, not for Gaussian noise, and is judged on images only.
    ``tensorrt_ops=False`` skips the TensorRT operator check (CPU-only U8S8 int8 graphs, whose
    float32 originals passed it). A gradient graph's energy graph must already be exported
    beside ``path`` (as ``<energy_graph>.onnx``): its finite differences are part of the check.
    """
    check_onnx_model(path, graph.name)
    if tensorrt_ops:
        check_graph(onnx.load(str(path)), graph.name)
    tolerance = graph.tolerance if tolerance is None else tolerance
    sess = session(path)
    judge = _smooth_judge(graph, sess) if graph.gradient_of is None else _gradient_judge(graph, sess, Path(path), tolerance)
    generator = torch.Generator().manual_seed(seed)
    sets = {"random": [(graph.random_inputs(b, generator), f"random inputs, batch {b}") for b in batch_sizes]}
    if graph.data_inputs is not None:
        n = graph.data_inputs[0].shape[0]  # one image alone, then all of them in one batch
        sets["data"] = [(tuple(t[:b] for t in graph.data_inputs), f"{b} dataset image(s)") for b in sorted({1, n})]
    errors: dict[str, float] = {}
    for prefix, cases in sets.items():
        enforce = tolerance if (enforce_on_random or prefix != "random") else None
        record: dict[str, float] = {}
        for i, (inputs, label) in enumerate(cases):
            record = _merge(record, judge(inputs, label, enforce, first=i == 0))
        errors.update({f"{prefix}_{key}": value for key, value in record.items()})
        errors = _merge(errors, record)
    errors["tolerance"] = float(tolerance)
    errors["batch_sizes_checked"] = float(len(batch_sizes))
    return errors


def _smooth_judge(graph: GraphDef, sess: ort.InferenceSession):
    def judge(inputs: Sequence[torch.Tensor], label: str, tolerance: float | None, first: bool) -> dict[str, float]:
        abs_err, rel_err = compare(graph, sess, inputs, label, tolerance)  # module global: tests replace it
        return {"max_abs_err": abs_err, "max_rel_err": rel_err}

    return judge


def _gradient_judge(graph: GraphDef, sess: ort.InferenceSession, path: Path, tolerance: float):
    from salkit.export.grad_check import judge_gradient
    from salkit.export.onnx_float64 import float64_graph

    assert graph.gradient_of is not None
    energy_name = graph.gradient_of.energy_graph
    energy_path = path.with_name(f"{energy_name}.onnx")
    if not energy_path.is_file():
        raise SalkitError(f"graph {graph.name!r} is checked against finite differences of graph {energy_name!r}, "
                          f"which is not exported at {energy_path}")
    energy_model = onnx.load(str(energy_path))
    energy64 = float64_graph(energy_model)
    energy_inputs = [i.name for i in energy_model.graph.input]

    def judge(inputs: Sequence[torch.Tensor], label: str, enforce: float | None, first: bool) -> dict[str, float]:
        """``first`` case of an input set: also the finite differences (four float64 energy
        evaluations per sample; the other cases add batch sizes, not directions)."""
        feeds = _feeds(graph, inputs)
        got = sess.run(list(graph.output_names), feeds)
        with torch.no_grad():
            exact = [t.detach().cpu().numpy() for t in graph.run_reference_float64(*inputs)]
        _checked_outputs(graph, got, [e.shape for e in exact], label)
        # The energy graph's other inputs: the inputs themselves (not what a split graph is fed).
        others = [t.detach().cpu().numpy().astype(np.float32) for t in inputs[1:]]

        def energy(saliency: np.ndarray) -> np.ndarray:  # (n·B, …) → (n·B,), the other inputs repeated
            repeat = saliency.shape[0] // others[0].shape[0]
            feed = {name: np.concatenate([a] * repeat) for name, a in zip(energy_inputs[1:], others, strict=True)}
            return energy64({energy_inputs[0]: saliency, **feed})[0]

        where = f"graph {graph.name!r} output {graph.output_names[0]!r} on {label}"
        return judge_gradient(graph.gradient_of.structure, inputs, got[0], exact[0],
                              energy if energy64 is not None and first else None, energy_name,
                              tolerance if enforce is None else enforce, enforce is not None, where)

    return judge


# Counts add up over input sets; everything else is a worst case.
_SUMMED = ("flip_units",)


def _merge(into: dict[str, float], record: dict[str, float]) -> dict[str, float]:
    merged = dict(into)
    for key, value in record.items():
        if key in merged:
            merged[key] = merged[key] + value if key in _SUMMED else max(merged[key], value)
        else:
            merged[key] = value
    return merged
