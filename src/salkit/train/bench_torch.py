"""The torch baselines of ``sal-runtime bench --compare-torch`` (imports torch when called).

Two baselines, measured in the same run as the runtime:

``torch`` — the authors' way. Cooperative predict with the **whole generator once per latent
sample** (N passes, encoder included each time), the mean probability, then K Langevin steps
whose energy gradient comes from autograd — what their test script and the paper's inference
do, without this project's shared-encoder split. QE-FPN: the model's own solve with the
runtime's fixed number of Broyden iterations, under ``no_grad``. The cooperative algorithm is
``salkit.kernels.coop.predict`` (the runtime's), with those callables.

``torch_best_recipe`` — torch's best CPU recipe: the project's split reference
(``salkit.train.coop.predictor.predict_tensor``; QE-FPN's own solve) with model and input in
``channels_last``, under ``torch.autocast("cpu", dtype=torch.bfloat16)`` where the CPU has bf16
units (fp32 elsewhere: emulated bf16 is slower than fp32).

They reach ``sal-runtime bench`` through the ``salkit.bench_baselines`` entry point (see
pyproject.toml), :func:`torch_baselines`: the runtime never imports this package. The interface
is plain data: a list of ``{"key", "label", "setup", …}`` whose ``setup()`` prepares the model
and returns ``run(x (B,3,S,S), latents (N,B,d)) → saliency (B,1,S,S)`` (numpy in and out).

The same plug-in measures torch's GEMM peaks for the bench's roofline (``torch_baselines.gemm_rates``,
:func:`torch_gemm_rates`): the peak of a precision is the best any installed engine reaches, and
torch's oneDNN kernels can beat the runtime's own engines by 3× (bf16 on AMX).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from salkit.base.errors import SalkitError


def load_torch_model(ckpt: str | Path, threads: int | None) -> Any:
    try:
        import torch

        from salkit.train.engine.checkpoint import build_model, load_checkpoint
    except ImportError as err:
        raise SalkitError(f"--compare-torch needs PyTorch and salkit[train] ({err})") from None
    if threads:
        torch.set_num_threads(threads)
    return build_model(load_checkpoint(ckpt)).eval()


def torch_baselines(
    ckpt: str | Path, *, kind: str, samples: int, steps: int, step_size: float, bf16: bool, threads: int | None = None,
) -> list[dict[str, Any]]:
    """The two baselines for a checkpoint, in the order they are to be measured (setup is lazy:
    the best recipe converts the model to channels_last, so it comes second)."""
    if kind not in BASELINES:
        raise SalkitError(f"--compare-torch has no torch baselines for model kind {kind!r} (it has: {', '.join(sorted(BASELINES))})")
    model = load_torch_model(ckpt, threads)
    if getattr(model, "kind", kind) != kind:
        raise SalkitError(f"--compare-torch {ckpt} holds a {model.kind} model, the bundle is {kind}")
    authors, best = BASELINES[kind](model, samples, steps, step_size, bf16)
    dtype = "bfloat16" if bf16 else "float32"
    return [
        {"key": "torch", "label": "torch eager, the authors' way (fp32)", "setup": authors, "dtype": "float32", "channels_last": False},
        {"key": "torch_best_recipe", "label": f"torch split reference, {dtype} autocast, channels_last" if bf16 else
         "torch split reference, fp32, channels_last", "setup": best, "dtype": dtype, "channels_last": True},
    ]


Setup = Callable[[], Callable[[np.ndarray, np.ndarray], np.ndarray]]


def _coop_baselines(model: Any, samples: int, steps: int, step_size: float, bf16: bool) -> tuple[Setup, Setup]:
    return lambda: coop_eager(model, samples, steps, step_size), lambda: coop_best_recipe(model, steps, step_size, bf16)


def _qefpn_baselines(model: Any, samples: int, steps: int, step_size: float, bf16: bool) -> tuple[Setup, Setup]:
    return lambda: qefpn_eager(model, steps), lambda: qefpn_best_recipe(model, steps, bf16)


# Model kind → (the authors' way, the best recipe), each a lazy setup (see torch_baselines).
BASELINES: dict[str, Callable[[Any, int, int, float, bool], tuple[Setup, Setup]]] = {
    "coop": _coop_baselines,
    "qefpn": _qefpn_baselines,
}


def coop_best_recipe(model: Any, steps: int, step_size: float, bf16: bool) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The split reference in channels_last (bf16 autocast where the CPU has bf16 units)."""
    import torch

    from salkit.train.coop.predictor import predict_tensor

    model = model.to(memory_format=torch.channels_last)

    def run(x_np: np.ndarray, latents: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(x_np).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = predict_tensor(model, x, torch.from_numpy(latents), steps, step_size, uncertainty=True)
        return out["saliency"].float().detach().numpy()

    return run


def qefpn_best_recipe(model: Any, iterations: int, bf16: bool) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """QE-FPN's own fixed-iteration solve in channels_last (bf16 autocast where the CPU has bf16 units)."""
    import torch

    return qefpn_eager(model.to(memory_format=torch.channels_last), iterations, channels_last=True, bf16=bf16)


def coop_eager(model: Any, samples: int, steps: int, step_size: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A callable (x (B,3,S,S), latents (N,B,d)) → saliency (B,1,S,S), the authors' way."""
    import torch

    from salkit.kernels import coop
    from salkit.train.coop.langevin import energy_gradient
    from salkit.train.coop.predictor import sample_probs_fn

    def run(x_np: np.ndarray, latents: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(x_np)
        out = coop.predict(sample_probs_fn(model, x, "whole"), torch.from_numpy(latents[:samples]), energy_gradient(model.energy, x),
                           steps=steps, step_size=step_size, uncertainty=False)
        return out["saliency"].numpy()

    return run


def qefpn_eager(
    model: Any, iterations: int, *, channels_last: bool = False, bf16: bool = False,
) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """The model's own inject → Broyden solve → decode under ``no_grad``, with exactly
    ``iterations`` Broyden steps like the runtime's solve: with the model's early stop the torch
    side's work would depend on how soon an image's solve meets the tolerance."""
    import dataclasses

    import torch

    model.solver_config = dataclasses.replace(model.solver_config, f_max_iter=iterations)
    layout = torch.channels_last if channels_last else torch.contiguous_format

    def run(x_np: np.ndarray, _latents: np.ndarray | None = None) -> np.ndarray:
        x = torch.from_numpy(x_np).contiguous(memory_format=layout)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z, _ = model.solve(model.inject(x), fixed_iterations=True)
            return torch.sigmoid(model.decode(z)).float().numpy()

    return run


def torch_gemm_rates(size: int, repeats: int, *, bf16: bool) -> dict[str, float]:
    """GFLOP/s of torch's fastest ``size``² matrix product per precision, with every thread torch uses.

    fp32 and, where the CPU has bf16 units (``bf16``; elsewhere torch emulates it and the rate
    would be an fp32 unit's), bf16 through ``torch.matmul`` (oneDNN / MKL); int8 through
    ``torch._int_mm`` (s8 × s8 → s32) where this torch build runs it on the CPU. Two operations
    per multiply-add, as for the other engines (salkit.runtime.bench.peaks).
    """
    import torch

    from salkit.base.timing import best_gemm_rate

    def rate(call: Callable[[], Any]) -> float:
        return best_gemm_rate(call, size, repeats)

    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator) for _ in range(2))
    out = torch.empty(size, size)
    rates = {"fp32": rate(lambda: torch.matmul(a, b, out=out))}
    if bf16:
        a16, b16 = a.bfloat16(), b.bfloat16()
        out16 = torch.empty(size, size, dtype=torch.bfloat16)
        rates["bf16"] = rate(lambda: torch.matmul(a16, b16, out=out16))
    int_mm = getattr(torch, "_int_mm", None)
    if int_mm is not None:
        a8, b8 = (torch.randint(-128, 128, (size, size), dtype=torch.int8, generator=generator) for _ in range(2))
        try:
            int_mm(a8, b8)
        except RuntimeError:  # this build has no CPU kernel for it
            pass
        else:
            rates["int8"] = rate(lambda: int_mm(a8, b8))
    return rates


# The roofline's hook (salkit.runtime.bench.peaks): the plug-in the bench already knows carries it.
torch_baselines.gemm_rates = torch_gemm_rates
