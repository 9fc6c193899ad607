"""Speed of the split energy gradient against the whole one (a record, not a test: run it on a quiet machine).

Builds an energy net at the paper preset's size and width (352², width 1.0; random weights, which
speed does not depend on), writes its gradient graphs as ``export-trt`` does (``energy_grad``;
``energy_image`` + ``energy_grad_step``) and times one Langevin descent's gradient work through
the runtime's own runners (``salkit.runtime.backends``), round by round interleaved so both sides
see the same load::

    whole  K × energy_grad(y, image)
    split  energy_image(image) once + K × energy_grad_step(y, image_term)

and each graph alone. Prints the CPU model (/proc/cpuinfo), the medians and ``speedup`` =
median(whole) ÷ median(split), and checks both sides give the same gradient.

    python -m experiments.energy_split_speed [--size 352] [--width 1.0] [--steps 5] [--batch 1,8]
        [--repeat 15] [--backends ort-cpu,openvino] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _graphs(directory: Path, size: int, width: float) -> Any:
    """Export the three gradient graphs of a random energy net; → a Manifest holding them."""
    import torch

    from salkit.export.graphs_coop import energy_structure
    from salkit.export.onnx_io import export_module, io_specs
    from salkit.export.vjp import EnergyGrad, EnergyGradStep, EnergyImageTerm
    from salkit.runtime.bundle import GraphSpec, Manifest, TensorSpec, sha256_file
    from salkit.train.coop.energy import CoopEnergy

    torch.manual_seed(0)
    grad = EnergyGrad(energy_structure(CoopEnergy(size, width).eval()), 3, size).eval()
    y, x = 3 * torch.randn(2, 1, size, size), torch.randn(2, 3, size, size)
    with torch.no_grad():
        term = grad.image_term(x)
    specs = {}
    for name, module, args, ins, outs in (
        ("energy_grad", grad, (y, x), ["saliency", "image"], ["grad"]),
        ("energy_image", EnergyImageTerm(grad), (x,), ["image"], ["image_term"]),
        ("energy_grad_step", EnergyGradStep(grad), (y, term), ["saliency", "image_term"], ["grad"]),
    ):
        path = directory / f"{name}.onnx"
        model = export_module(module, args, path, input_names=ins, output_names=outs)
        specs_in, specs_out = io_specs(model)
        specs[name] = GraphSpec(file=path.name, sha256=sha256_file(path), inputs=tuple(TensorSpec.from_json(s) for s in specs_in),
                                outputs=tuple(TensorSpec.from_json(s) for s in specs_out))
    return Manifest(model_kind="coop", model_name="energy_split_speed", input_size=size, mean=(0.0, 0.0, 0.0),
                    std=(1.0, 1.0, 1.0), precision="fp32", batch={"min": 1, "opt": 1, "max": 16}, graphs=specs, root=directory)


def _timed_ms(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def measure(manifest: Any, backend: str, batch: int, steps: int, repeat: int, threads: int | None) -> dict[str, Any]:
    from salkit.runtime.backends import create_runner

    runners = {name: create_runner(backend, manifest, name, threads=threads).load() for name in manifest.graphs}
    try:
        device = runners["energy_grad"].device
        size = manifest.input_size
        rng = np.random.default_rng(batch)
        x = device.empty((batch, 3, size, size))
        y = device.empty((batch, 1, size, size))
        device.upload(rng.standard_normal((batch, 3, size, size), dtype=np.float32), x)
        device.upload((3 * rng.standard_normal((batch, 1, size, size))).astype(np.float32), y)
        shape = runners["energy_image"].output_shapes({"image": x.shape})["image_term"]
        term, g_whole, g_split = device.empty(shape), device.empty(y.shape), device.empty(y.shape)
        bind_image = runners["energy_image"].bind({"image": x}, {"image_term": term})
        bind_step = runners["energy_grad_step"].bind({"saliency": y, "image_term": term}, {"grad": g_split})
        bind_whole = runners["energy_grad"].bind({"saliency": y, "image": x}, {"grad": g_whole})
        graphs = {name: (lambda r=runners[name], b=b: r.run(b)) for name, b in
                  (("energy_grad", bind_whole), ("energy_image", bind_image), ("energy_grad_step", bind_step))}

        def whole() -> None:
            for _ in range(steps):
                graphs["energy_grad"]()

        def split() -> None:
            graphs["energy_image"]()
            for _ in range(steps):
                graphs["energy_grad_step"]()

        whole(), split()  # warm-up (and the outputs compared below)
        difference = float(np.abs(device.download(g_whole) - device.download(g_split)).max())
        scale = float(np.abs(device.download(g_whole)).max())
        times: dict[str, list[float]] = {"whole": [], "split": [], **{name: [] for name in graphs}}
        for round_ in range(repeat):
            sides = [("whole", whole), ("split", split)]
            for name, call in sides if round_ % 2 == 0 else sides[::-1]:  # alternate who goes first
                times[name].append(_timed_ms(call))
            for name, call in graphs.items():
                times[name].append(_timed_ms(call))
        p50 = {name: float(np.median(t)) for name, t in times.items()}
        return {"backend": backend, "batch": batch, "steps": steps, "repeat": repeat, "p50_ms": p50,
                "speedup": p50["whole"] / p50["split"], "max_abs_grad_difference": difference, "max_abs_grad": scale}
    finally:
        for runner in runners.values():
            runner.close()


def main() -> None:
    from salkit.runtime.backends import availability
    from salkit.runtime.cpu import cpu_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--backends", default="ort-cpu,openvino")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cpu = cpu_info()
    record: dict[str, Any] = {"cpu": cpu.model, "flags": sorted(cpu.flags), "size": args.size, "width": args.width, "runs": []}
    print(f"CPU: {cpu.summary()}; energy {args.size}², width {args.width}, K = {args.steps}")
    with tempfile.TemporaryDirectory() as folder:
        manifest = _graphs(Path(folder), args.size, args.width)
        for backend in args.backends.split(","):
            why = availability().get(backend, f"unknown backend {backend!r}")
            if why:
                print(f"{backend}: skipped ({why})")
                continue
            for batch in (int(b) for b in args.batch.split(",")):
                run = measure(manifest, backend, batch, args.steps, args.repeat, args.threads)
                record["runs"].append(run)
                p = run["p50_ms"]
                print(f"{backend} batch {batch}: whole {p['whole']:.1f} ms (energy_grad {p['energy_grad']:.1f} × {args.steps}), "
                      f"split {p['split']:.1f} ms (energy_image {p['energy_image']:.1f} + energy_grad_step "
                      f"{p['energy_grad_step']:.1f} × {args.steps}): speedup {run['speedup']:.3f}×; "
                      f"max |Δ grad| {run['max_abs_grad_difference']:.2g} of {run['max_abs_grad']:.2g}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
