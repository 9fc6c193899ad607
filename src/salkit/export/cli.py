"""``export-trt``: a train-coop / train-qefpn checkpoint → a validated bundle (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from salkit.base.errors import SalkitError, report_user_errors

if TYPE_CHECKING:
    from salkit.runtime.bundle import Manifest


@click.command(name="export-trt")
@click.option("--ckpt", "ckpt", required=True, type=click.Path(path_type=Path), help="Checkpoint (.pt) to export.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Bundle directory to write.")
@click.option("--size", type=int, default=None, help="Input side S; must be the checkpoint's training size (the default).")
@click.option("--batch", "batch", default="1:8:16", show_default=True,
              help="Engine optimisation profile MIN:OPT:MAX over the batch axis.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16", "int8"]), default="auto",
              show_default=True, help="auto: fp32 graphs plus the lower-precision artefacts that pass the precision "
              "gate on this CPU, the fastest plan recorded; a named one is forced (refused if it fails the gate).")
@click.option("--int8-scheme", "int8_scheme", type=click.Choice(["auto", "tensorrt", "cpu", "cpu7"]), default="auto",
              show_default=True, help="int8 activations: symmetric int8 for TensorRT, uint8 for ONNX Runtime CPU "
              "kernels (cpu7: with 7-bit weights, for CPUs without VNNI); auto = tensorrt when engines are built here.")
@click.option("--calib", type=click.Path(path_type=Path), default=None,
              help="Photographs (a folder, or a dataset root with img/; with train.txt only those ids) to check "
              "graphs on, calibrate int8 with and gate reduced precision on.")
@click.option("--energy-steps", "energy_steps", type=click.Choice(["gate", "trained"]), default="gate", show_default=True,
              help="coop: gate = keep the energy step count (0…2K) that lowers MAE without lowering S on --calib's "
              "photos with masks (gt/), 0 when none does; trained = the training's K.")
@click.option("--refine-maps", "refine_maps", multiple=True, type=click.Path(path_type=Path),
              help="coop: a folder of another model's maps of --calib's masked photos (<photo stem>.png; repeatable): "
              "refine keeps the step count (0…2K) that harms none of them on those photos, 0 when every count does; "
              "without it refine takes the predict's count.")
@click.option("--split-energy", "split_energy", is_flag=True,
              help="coop: also write energy_image and energy_grad_step, so the runtime computes the image's share of the "
              "energy's first convolution once per predict instead of every Langevin step (same maps within 1e-5; measured "
              "0.73-0.99x the speed on an AVX-512 Xeon, hence off by default).")
@click.option("--no-engine", "no_engine", is_flag=True, help="Skip TensorRT engines even when a GPU is present.")
@click.option("--triton-repo", "triton_repo", type=click.Path(path_type=Path), default=None,
              help="Also write a Triton Inference Server model repository here.")
@click.option("--triton-graph-backend", "triton_graph_backend",
              type=click.Choice(["auto", "onnxruntime", "openvino", "python"]), default="auto", show_default=True,
              help="Triton graph models: auto = tensorrt_plan with engines, else onnxruntime_onnx; openvino = Triton's "
              "OpenVINO backend; python = ONNX Runtime inside Python-backend models (Python-only Triton builds).")
@click.option("--triton-sys-path", "triton_sys_path", multiple=True, type=click.Path(path_type=Path),
              help="Directory with numpy (<2) and onnxruntime for the Triton Python stub (repeatable).")
@click.option("--force", is_flag=True, help="Replace an existing bundle / Triton repository.")
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript", show_default=True,
              help="torch.onnx exporter (see salkit.export.onnx_io for the measured choice).")
@report_user_errors
def main(ckpt: Path, out: Path, size: int | None, batch: str, precision: str, int8_scheme: str, calib: Path | None,
         no_engine: bool, triton_repo: Path | None, triton_graph_backend: str, triton_sys_path: tuple[Path, ...],
         force: bool, exporter: str, energy_steps: str, refine_maps: tuple[Path, ...], split_energy: bool) -> None:
    """Export CKPT into the bundle OUT: ONNX graphs, checks, engines, manifest; all or nothing."""
    from salkit.export.batch_profile import BatchProfile
    from salkit.export.bundle_writer import ExportOptions, export_bundle

    profile = BatchProfile.parse(batch)  # bad specs fail before the checkpoint is even read
    if calib is not None and not calib.exists():
        raise SalkitError(f"--calib {calib} does not exist")
    options = ExportOptions(ckpt=ckpt, out=out, size=size, batch=profile, precision=precision, calib=calib,
                            build_engines=not no_engine, triton_repo=triton_repo, force=force, exporter=exporter,
                            int8_scheme=int8_scheme, triton_graph_backend=triton_graph_backend,
                            triton_sys_path=tuple(str(p) for p in triton_sys_path), energy_steps=energy_steps,
                            refine_maps=tuple(refine_maps), split_energy=split_energy)
    manifest = export_bundle(options, progress=lambda message: click.echo(f"[export] {message}", err=True))
    click.echo(summary_line(out, manifest))


def summary_line(out: Path, manifest: Manifest) -> str:
    """The export's last line: what was written and the plan ``auto`` runs on this CPU — the per-graph
    plan when one was kept (the runtime's ``auto`` takes it first), else the single plan."""
    from salkit.runtime.graph_plans import describe

    worst = max((g.validation.get("max_rel_err", 0.0) for g in manifest.graphs.values()), default=0.0)
    engines = manifest.engines.get("status", "not built")
    choice = manifest.precision_choice
    line = (f"{out}: {manifest.model_kind} bundle, {len(manifest.graphs)} graphs, worst relative error "
            f"{worst:.2e}, engines {engines}, precision {choice.get('plan', 'ort-cpu:fp32')} ({choice.get('reason', '')})")
    if choice.get("graphs"):
        line += f"; plan per graph {describe(choice['graphs'])} ({choice.get('mix_reason', '')})"
    return line
