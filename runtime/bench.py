"""``sal-runtime bench``: the performance record of a bundle (not a timed test).

For each batch size it times the runtime's predict (latency p50/p99 over ``repeat`` calls after
``warmup``; images/s = batch / median latency, robust to a busy machine's outliers), counts the FLOPs of one call from the graphs and
divides the achieved FLOP rate by the measured fp32 GEMM peak (``roofline_fraction``). For a
cooperative bundle both paths are timed: ``split`` (encoder once, latent decoder on N·B rows; the
runtime's default and the headline numbers) and ``whole`` (the generator graph N times over).
With a checkpoint, the same inputs go through torch eager the authors' way
(:mod:`salkit.train.bench_torch`) at every batch size; ``speedup_vs_torch`` compares with
torch at its best batch size. With an fp32 bundle next to an int8/fp16 one, both run on the same
inputs and latents: ``speedup_vs_fp32`` and ``mae_delta`` (mean |saliency − saliency_fp32|).

The JSON record (stable keys)::

    {"bundle", "backend", "precision", "machine": {"cpus", "gemm_peak_gflops", "gemm_peak_samples_gflops", "platform",
                                                 "gemm_rates_gflops": {"numpy", "onnxruntime"}},
     "settings": {"samples", "steps", "input_size", "warmup", "repeat", "threads"},
     "<kind>": {"<batch>": {"images_per_s", "p50_ms", "p99_ms", "gflop_per_image", "roofline_fraction",
                            "torch_images_per_s", "speedup_vs_torch", "speedup_vs_fp32", "mae_delta",
                            "paths": {"split": {…}, "whole": {…}}}},
     "torch": {"best_batch", "best_images_per_s", "per_batch": {"<batch>": images_per_s}},
     "command"}

Values that were not measured are ``null``. ``command`` is the ``sal-runtime bench …`` line that
made the record (the options given, as given) and ``machine.platform`` the OS it ran on; the CLI
writes both, ``run_bench``'s return has neither.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from salkit.kernels.errors import SalkitError
from salkit.runtime.bench_flops import gemm_rates, graph_flops
from salkit.runtime.bundle import Manifest, load_bundle
from salkit.runtime.loops import check_steps
from salkit.runtime.predictor import Predictor


def timings(call: Callable[[], Any], warmup: int, repeat: int) -> dict[str, float]:
    for _ in range(warmup):
        call()
    lat = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        lat.append(time.perf_counter() - start)
    ms = np.asarray(lat) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def bench_inputs(m: Manifest, batch: int, images: Sequence[Path] | None, seed: int = 0) -> np.ndarray:
    """A normalised (B, 3, S, S) batch: the given images (cycled) or smooth synthetic pictures."""
    from salkit.base.images import decode_image, preprocess

    if images:
        pictures = [decode_image(images[i % len(images)]) for i in range(batch)]
    else:
        rng = np.random.default_rng(seed)
        coarse = rng.integers(0, 256, (batch, 8, 8, 3), dtype=np.uint8)
        from PIL import Image

        pictures = [np.asarray(Image.fromarray(c).resize((m.input_size, m.input_size), Image.BILINEAR)) for c in coarse]
    return preprocess(pictures, m.input_size, m.mean, m.std)


def flops_per_image(predictor: Predictor, samples: int, steps: int) -> dict[str, float]:
    """Counted FLOPs of predict for one image, per path."""
    m = predictor.manifest
    f = {name: graph_flops(m.graph_path(name)) for name in m.graphs if name != "energy"}
    if m.model_kind == "coop":
        langevin = steps * f["energy_grad"]
        return {
            "split": f["encoder"] + samples * f["latent_decoder"] + langevin,
            "whole": samples * f["generator"] + langevin,
        }
    return {"split": f["encoder"] + steps * f["f"] + f["decoder"]}  # T Broyden steps (+1 f at z0)


def run_bench(
    bundle: str | Path,
    batches: Sequence[int],
    *,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    samples: int | None = None,
    steps: int | None = None,
    warmup: int = 1,
    repeat: int = 5,
    compare_torch: str | Path | None = None,
    fp32_bundle: str | Path | None = None,
    images: Sequence[Path] | None = None,
    gemm_size: int = 1536,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    if not batches or any(b < 1 for b in batches):
        raise SalkitError(f"--batch needs positive batch sizes, got {list(batches)}")
    if gemm_size < 64:
        raise SalkitError(f"--gemm-size must be >= 64, got {gemm_size}")
    if warmup < 0 or repeat < 1:
        raise SalkitError(f"--warmup must be >= 0 and --repeat >= 1, got {warmup} and {repeat}")
    m = load_bundle(bundle)
    kind = m.model_kind
    if kind == "coop":
        n = check_steps("samples", m.coop.get("samples", 1) if samples is None else samples, 1)
        k = check_steps("steps", m.coop.get("langevin_steps", 0) if steps is None else steps, 0)
    else:
        n, k = 1, check_steps("steps", m.qefpn.get("broyden_iterations", 0) if steps is None else steps, 0)
    inputs = {
        batch: (bench_inputs(m, batch, images),
                np.random.default_rng(1).standard_normal((n, batch, int(m.coop.get("latent_dim", 1))), dtype=np.float32))
        for batch in batches
    }
    # Torch first, and released before the runtime loads: holding both at batch 8 and 352² does
    # not fit in memory on a 24 GiB machine.
    torch_per_batch = _measure_torch(compare_torch, kind, n, k, m, inputs, warmup, repeat, progress) if compare_torch else {}
    with Predictor.from_bundle(bundle, backend=backend, precision=precision, threads=threads) as predictor:
        progress("measuring the fp32 GEMM peak")
        rates = gemm_rates(gemm_size)
        peak = max(rates.values())
        flops = flops_per_image(predictor, n, k + 1 if kind == "qefpn" else k)
        record: dict[str, Any] = {
            "bundle": str(bundle), "backend": predictor.backend_name, "precision": predictor.precision, "plan_reason": predictor.backend_reason,
            "machine": {"cpus": os.cpu_count(), "gemm_peak_gflops": peak, "gemm_rates_gflops": rates},
            "settings": {"samples": n if kind == "coop" else None, "steps": k, "input_size": m.input_size,
                         "warmup": warmup, "repeat": repeat, "threads": threads},
            kind: {},
        }
        fp32 = Predictor.from_bundle(fp32_bundle, backend=backend, threads=threads) if fp32_bundle else None
        try:
            for batch in batches:
                x, latents = inputs[batch]
                paths = ("split", "whole") if kind == "coop" else ("split",)
                entry: dict[str, Any] = {"paths": {}}
                for path in paths:
                    progress(f"{kind} batch {batch}: runtime, {path} path")
                    call = _runtime_call(predictor, x, latents, k, path)
                    t = timings(call, warmup, repeat)
                    achieved = flops[path] * batch / (t["p50_ms"] / 1e3) / 1e9
                    entry["paths"][path] = {
                        "images_per_s": batch / (t["p50_ms"] / 1e3), "p50_ms": t["p50_ms"], "p99_ms": t["p99_ms"],
                        "gflop_per_image": flops[path] / 1e9, "achieved_gflops": achieved, "roofline_fraction": achieved / peak,
                    }
                    progress(f"  {batch / (t['p50_ms'] / 1e3):.3f} img/s, p50 {t['p50_ms']:.1f} ms, {achieved / peak:.1%} of peak")
                entry.update({key: entry["paths"]["split"][key] for key in ("images_per_s", "p50_ms", "p99_ms", "gflop_per_image", "roofline_fraction")})
                entry.update(torch_images_per_s=None, speedup_vs_torch=None, speedup_vs_fp32=None, mae_delta=None)
                if fp32 is not None:
                    progress(f"{kind} batch {batch}: fp32 bundle")
                    t = timings(_runtime_call(fp32, x, latents, k, "split"), warmup, repeat)
                    entry["speedup_vs_fp32"] = entry["images_per_s"] / (batch / (t["p50_ms"] / 1e3))
                    ours = _runtime_call(predictor, x, latents, k, "split")()["saliency"]
                    theirs = _runtime_call(fp32, x, latents, k, "split")()["saliency"]
                    entry["mae_delta"] = float(np.abs(ours - theirs).mean())
                record[kind][str(batch)] = entry
        finally:
            if fp32 is not None:
                fp32.close()
        # A busy machine lowers a short GEMM burst more than a long run: measure again, keep the best.
        progress("measuring the fp32 GEMM peak again")
        rates_after = gemm_rates(gemm_size)
        peak_after = max(rates_after.values())
        record["machine"]["gemm_rates_gflops"] = {name: max(r, rates_after[name]) for name, r in rates.items()}
        if peak_after > peak:
            record["machine"]["gemm_peak_gflops"] = peak_after
            for entry in record[kind].values():
                for p in entry["paths"].values():
                    p["roofline_fraction"] = p["achieved_gflops"] / peak_after
                entry["roofline_fraction"] = entry["paths"]["split"]["roofline_fraction"]
        record["machine"]["gemm_peak_samples_gflops"] = [peak, peak_after]
        if torch_per_batch:
            best = max(torch_per_batch, key=lambda b: torch_per_batch[b])
            for batch, entry in record[kind].items():
                entry["torch_images_per_s"] = torch_per_batch[batch]
                entry["speedup_vs_torch"] = entry["images_per_s"] / torch_per_batch[best]
            record["torch"] = {"best_batch": int(best), "best_images_per_s": torch_per_batch[best], "per_batch": torch_per_batch}
        return record


def _runtime_call(predictor: Predictor, x: np.ndarray, latents: np.ndarray, steps: int, path: str) -> Callable[[], dict]:
    if predictor.kind == "qefpn":
        return lambda: predictor.predict_tensor(x, steps=steps)
    return lambda: predictor.predict_tensor(x, latents=latents, steps=steps, uncertainty=True, path=path)


def _measure_torch(ckpt: str | Path, kind: str, samples: int, steps: int, manifest: Manifest,
                   inputs: dict[int, tuple[np.ndarray, np.ndarray]], warmup: int, repeat: int,
                   progress: Callable[[str], None]) -> dict[str, float]:
    """Torch eager images/s per batch size (the model is dropped afterwards)."""
    import gc

    run = _torch_runner(ckpt, kind, samples, steps, manifest)
    per_batch: dict[str, float] = {}
    for batch, (x, latents) in inputs.items():
        progress(f"{kind} batch {batch}: torch eager")
        t = timings(lambda: run(x, latents), min(warmup, 1), max(1, repeat // 2))
        per_batch[str(batch)] = batch / (t["p50_ms"] / 1e3)
        progress(f"  torch {per_batch[str(batch)]:.3f} img/s, p50 {t['p50_ms']:.1f} ms")
    del run
    gc.collect()
    return per_batch


def _torch_runner(ckpt: str | Path, kind: str, samples: int, steps: int, manifest: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    from salkit.train import bench_torch  # torch lives on the training side

    model = bench_torch.load_torch_model(ckpt, None)
    if getattr(model, "kind", kind) != kind:
        raise SalkitError(f"--compare-torch {ckpt} holds a {model.kind} model, the bundle is {kind}")
    if kind == "coop":
        return bench_torch.coop_eager(model, samples, steps, float(manifest.coop["langevin_step"]))
    return bench_torch.qefpn_eager(model, steps)


def format_record(record: dict[str, Any]) -> str:
    kind = "coop" if "coop" in record else "qefpn"
    lines = [
        f"{record['bundle']} ({kind}, {record['precision']}, backend {record['backend']}); "
        f"fp32 GEMM peak {record['machine']['gemm_peak_gflops']:.1f} GFLOP/s on {record['machine']['cpus']} CPUs",
        f"{'batch':>5} {'path':>6} {'img/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'GFLOP/img':>10} {'roofline':>9} {'vs torch':>9}",
    ]
    for batch, entry in record[kind].items():
        for path, p in entry["paths"].items():
            vs = entry["speedup_vs_torch"]
            torch_ratio = "" if vs is None else f"{p['images_per_s'] / record['torch']['best_images_per_s']:.2f}x"
            lines.append(f"{batch:>5} {path:>6} {p['images_per_s']:8.2f} {p['p50_ms']:9.1f} {p['p99_ms']:9.1f} "
                         f"{p['gflop_per_image']:10.2f} {p['roofline_fraction']:9.1%} {torch_ratio:>9}")
        if entry["speedup_vs_fp32"] is not None:
            lines.append(f"{batch:>5} vs fp32: {entry['speedup_vs_fp32']:.2f}x faster, MAE delta {entry['mae_delta']:.5f}")
    if "torch" in record:
        t = record["torch"]
        lines.append(f"torch eager (authors' way): best {t['best_images_per_s']:.2f} img/s at batch {t['best_batch']}")
    return "\n".join(lines)
