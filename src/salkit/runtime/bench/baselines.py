"""Baselines of ``sal-runtime bench``: other implementations timed on the same inputs in the same run.

The runtime never imports a baseline's code: baselines are plug-ins registered under the entry
point group ``salkit.bench_baselines`` (salkit[train] registers ``torch``:
``salkit.train.bench_torch:torch_baselines``). A plug-in is a callable::

    factory(source, *, kind, samples, steps, step_size, bf16, threads) -> [
        {"key": "torch", "label": "...", "setup": setup, **facts}, ...]

where ``source`` is what the user named (a checkpoint), ``bf16`` whether this CPU has bf16
units, and ``setup()`` prepares and returns ``run(x (B,3,S,S), latents (N,B,d)) → saliency
(B,1,S,S)``, numpy in and out. Baselines are measured in list order, before the runtime loads
(holding a torch model and the runtime's buffers at once does not fit at 352², batch 8, 24 GiB).
"""

from __future__ import annotations

import functools
import gc
import time
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

import numpy as np

from salkit.base.errors import SalkitError

GROUP = "salkit.bench_baselines"
BaselineFactory = Callable[..., list[dict[str, Any]]]


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


def baseline_plugin(name: str) -> BaselineFactory:
    """The factory registered as ``name`` in the ``salkit.bench_baselines`` group."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise SalkitError(
            f"no '{name}' bench baseline is installed (entry point group {GROUP}); "
            f"--compare-torch needs salkit[train]: pip install -e '.[train]'"
        )
    try:
        return found[0].load()
    except ImportError as err:
        raise SalkitError(f"the '{name}' bench baseline cannot be loaded ({err}); --compare-torch needs salkit[train]") from None


def measure_baselines(
    baselines: list[dict[str, Any]], inputs: Mapping[int, tuple[np.ndarray, np.ndarray]], warmup: int, repeat: int,
    progress: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """key → {"label", facts…, "per_batch": {batch: images/s}, "best_batch", "best_images_per_s", "sample"}.

    ``sample`` is the baseline's saliency at the smallest batch (compared with the runtime's later).
    Each baseline's model is released before the next is set up.
    """
    results: dict[str, dict[str, Any]] = {}
    smallest = min(inputs)
    for baseline in baselines:
        key, label = str(baseline["key"]), str(baseline.get("label", baseline["key"]))
        run = baseline["setup"]()
        per_batch: dict[str, float] = {}
        sample = None
        for batch, (x, latents) in inputs.items():
            progress(f"batch {batch}: {label}")
            t = timings(functools.partial(run, x, latents), min(warmup, 1), max(1, repeat // 2))
            per_batch[str(batch)] = batch / (t["p50_ms"] / 1e3)
            progress(f"  {per_batch[str(batch)]:.3f} img/s, p50 {t['p50_ms']:.1f} ms")
            if batch == smallest:
                sample = np.asarray(run(x, latents), dtype=np.float32)
        best = max(per_batch, key=lambda b: per_batch[b])
        facts = {k: v for k, v in baseline.items() if k not in ("key", "label", "setup")}
        results[key] = {"label": label, **facts, "per_batch": per_batch, "best_batch": int(best),
                        "best_images_per_s": per_batch[best], "sample": sample}
        del run
        gc.collect()
    return results


__all__ = ["GROUP", "BaselineFactory", "baseline_plugin", "measure_baselines", "timings"]
