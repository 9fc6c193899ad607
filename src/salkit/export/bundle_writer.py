"""Checkpoint → bundle, all or nothing.

Every graph is exported into a temporary directory, checked (:mod:`salkit.export.checks`),
given the lower-precision artefacts that pass the precision gate (:mod:`salkit.export.precision.auto`)
and built into TensorRT engines; the manifest is written last
and the directory is renamed into place only then (``atomic_directory``): a failed export never
leaves a half bundle, and ``--force`` replaces an old bundle only after the new one is complete.
"""

from __future__ import annotations

import dataclasses
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import onnx
import torch

from salkit.base.atomic import atomic_directory, make_readable
from salkit.base.errors import SalkitError
from salkit.base.images import IMAGENET_MEAN, IMAGENET_STD
from salkit.export.batch_profile import BatchProfile
from salkit.export.checks import CHECK_BATCH_SIZES, validate_graph
from salkit.export.kinds import EXPORT_KINDS, get_export_kind
from salkit.export.onnx_io import OPSET, export_module, io_specs
from salkit.runtime.bundle import GraphSpec, Manifest, TensorSpec, sha256_file
from salkit.runtime.kinds import get_kind

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")  # salkit.export.precision.auto.PRECISION_CHOICES
DATA_CHECK_IMAGES = 4  # dataset images each graph is checked on (fp32 only)
CALIB_IMAGES = 16  # training-split photographs int8 is calibrated (and each graph checked) on
GATE_IMAGES = 24  # further training-split photographs the precision gate judges the final maps on (8 passed a
# QE-FPN int8 plan whose maps then missed max |Δ| ≤ 0.05 on 24 test photographs: the max is a tail statistic)

Progress = Callable[[str], None]


@dataclasses.dataclass
class ExportOptions:
    ckpt: Path
    out: Path
    size: int | None = None
    batch: BatchProfile = BatchProfile()
    precision: str = "auto"  # auto | fp32 | fp16 | bf16 | int8 (see salkit.export.precision.auto)
    calib: Path | None = None
    build_engines: bool = True
    triton_repo: Path | None = None
    force: bool = False
    exporter: str = "torchscript"
    int8_scheme: str = "auto"  # "tensorrt" | "cpu" | "cpu7" | "auto" (see salkit.export.precision.artefacts)
    triton_graph_backend: str = "auto"  # "auto" | "onnxruntime" | "python" (see salkit.export.triton_repo)
    triton_sys_path: tuple[str, ...] = ()
    # coop: "gate" keeps the energy step count that helps on --calib's masked photos (energy_steps.py);
    # "trained" keeps the training's K.
    energy_steps: str = "gate"
    # coop: other models' maps of --calib's masked photos (one folder per model): refine's own step count is
    # judged on them (energy_steps.gate_refine_steps); without them refine takes the predict's count.
    refine_maps: tuple[Path, ...] = ()
    # coop: also write energy_image + energy_grad_step (salkit.export.graphs_coop; off: measured slower).
    split_energy: bool = False


def _check_output(path: Path, force: bool, what: str = "output") -> None:
    """Refuse early (before any export work) what atomic_directory would refuse at the end."""
    if path.exists() and not force:
        raise SalkitError(f"{what} {path} already exists (pass --force to replace it)")
    if path.exists() and not path.is_dir():
        raise SalkitError(f"{what} {path} exists and is not a directory")
    parent = path.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SalkitError(f"{what} {path} cannot be written: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK):
        raise SalkitError(f"{what} {path} cannot be written: {parent} is not writable")


def _versions(ckpt: dict[str, Any], exporter: str) -> dict[str, str]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    trained = ckpt.get("versions", {}) or {}
    return {
        "salkit": version("salkit"), "torch": torch.__version__, "onnx": onnx.__version__,
        "onnxruntime": version("onnxruntime"), "opset": str(OPSET), "exporter": exporter,
        "trained_salkit": str(trained.get("salkit", "unknown")), "trained_torch": str(trained.get("torch", "unknown")),
    }


def _normalisation(train_config: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    for source in (train_config, train_config.get("data", {}) if isinstance(train_config.get("data"), dict) else {}):
        if "mean" in source and "std" in source:
            return tuple(float(v) for v in source["mean"]), tuple(float(v) for v in source["std"])
    return IMAGENET_MEAN, IMAGENET_STD


def _load_model(ckpt_path: Path) -> tuple[dict[str, Any], torch.nn.Module]:
    from salkit.train.engine.checkpoint import build_model, load_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    kind = ckpt["model"].get("kind")
    if kind not in EXPORT_KINDS:
        raise SalkitError(f"checkpoint {ckpt_path} holds a model of kind {kind!r}; export knows "
                          f"{', '.join(sorted(EXPORT_KINDS))}")
    return ckpt, build_model(ckpt).eval()


def _resolve_size(model: torch.nn.Module, kind: str, requested: int | None, ckpt_path: Path) -> int:
    trained = int(getattr(model, "image_size", 0) or model.config.get("image_size", 0))
    if requested is None or requested == trained:
        return trained
    raise SalkitError(f"--size {requested} does not fit checkpoint {ckpt_path}: {get_export_kind(kind).size_fixed_by} is "
                      f"built for {trained}×{trained} inputs")


def _tensor_specs(items: list[dict]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in items)


def _graph_spec(path: Path, model: onnx.ModelProto, validation: dict[str, float]) -> GraphSpec:
    inputs, outputs = io_specs(model)
    return GraphSpec(file=path.name, sha256=sha256_file(path), inputs=_tensor_specs(inputs),
                     outputs=_tensor_specs(outputs), validation=validation)


def export_bundle(options: ExportOptions, progress: Progress = lambda message: None) -> Manifest:
    """Run the whole export; returns the manifest of the bundle now at ``options.out``."""
    if options.precision not in PRECISIONS:
        raise SalkitError(f"unknown precision {options.precision!r} (choose from {', '.join(PRECISIONS)})")
    if options.int8_scheme not in ("auto", "tensorrt", "cpu", "cpu7"):
        raise SalkitError(f"unknown int8 scheme {options.int8_scheme!r} (choose from auto, tensorrt, cpu, cpu7)")
    if options.precision in ("fp16", "bf16", "int8") and options.calib is None:
        what = "calibrate the quantization and gate it on" if options.precision == "int8" else "gate it on"
        raise SalkitError(f"--precision {options.precision} needs --calib DIR (photographs to {what})")
    from salkit.export.precision.auto import unsupported_reason

    unsupported = unsupported_reason(options.precision)
    if unsupported:
        raise SalkitError(f"--precision {options.precision}: {unsupported}")
    _check_output(options.out, options.force)
    if options.triton_repo is not None:
        _check_output(options.triton_repo, options.force, "Triton repository")
    _check_refine_maps(options)

    progress(f"loading checkpoint {options.ckpt}")
    ckpt, model = _load_model(options.ckpt)
    kind, train_config = ckpt["model"]["kind"], dict(ckpt.get("train_config") or {})
    size = _resolve_size(model, kind, options.size, options.ckpt)
    mean, std = _normalisation(train_config)
    data, calib = None, None
    if options.calib is not None:
        from salkit.export.precision.calib import load_calibration

        reduced = options.precision != "fp32"
        calib = load_calibration(options.calib, size, mean, std, CALIB_IMAGES if reduced else DATA_CHECK_IMAGES,
                                 GATE_IMAGES if reduced else 0)
        data = torch.from_numpy(calib.calibration)
    if options.refine_maps and not get_kind(kind).refines:
        raise SalkitError(f"--refine-maps judges a cooperative model's refine; {options.ckpt} holds a {kind} model")
    if options.split_energy and not get_export_kind(kind).split_energy:
        raise SalkitError(f"--split-energy splits a cooperative model's energy gradient; {options.ckpt} holds a {kind} model")
    graphs = get_export_kind(kind).graph_defs(model, size, data, **({"split_energy": True} if options.split_energy else {}))

    manifest = Manifest(
        model_kind=kind, model_name=str(ckpt["model"]["name"]), input_size=size, mean=mean, std=std,
        precision="fp32", batch=options.batch.as_dict(), graphs={},
        versions=_versions(ckpt, options.exporter),
        extra={"checkpoint": {"file": options.ckpt.name, "sha256": sha256_file(options.ckpt),
                              "step": int(ckpt.get("step", 0)), "epoch": int(ckpt.get("epoch", 0)),
                              "config": dict(ckpt["model"].get("config", {}))},
               "tensorrt_importable": True,  # every graph passed the TensorRT operator check
               "validated_on": {"random_batches": list(CHECK_BATCH_SIZES),
                                "dataset_images": 0 if data is None else int(data.shape[0])}},
    )
    get_export_kind(kind).store_settings(manifest, model, train_config)

    with atomic_directory(options.out, force=options.force) as tmp:
        for graph in graphs:
            path = tmp / f"{graph.name}.onnx"
            progress(f"exporting {graph.name}")
            args = graph.feeds(*graph.random_inputs(2, torch.Generator().manual_seed(0)))
            onnx_model = export_module(graph.module, args, path, input_names=graph.input_names,
                                       output_names=graph.output_names, exporter=options.exporter)
            progress(f"checking {graph.name} (onnx.checker, TensorRT ops, ONNX Runtime vs torch)")
            validation = validate_graph(graph, path)
            manifest.graphs[graph.name] = _graph_spec(path, onnx_model, validation)
        from salkit.export.precision.auto import PrecisionJob, apply_precision

        if get_kind(kind).refines and options.calib is not None and options.energy_steps == "gate":
            # A bundle with an energy: its step count first, judged on the float32 graphs, so the
            # precision gate and timings below judge the predict the bundle ships (steps included).
            manifest.write(tmp)
            _gate_energy_steps(manifest, tmp, options.calib, progress)
            _gate_refine_steps(manifest, tmp, options.calib, options.refine_maps, progress)
        scheme = _int8_scheme(options)
        apply_precision(PrecisionJob(manifest, graphs, tmp, calib, scheme, progress), options.precision)
        if "int8" in manifest.variants:  # uint8 activations (cpu schemes) have no TensorRT Q/DQ form
            manifest.extra.update(int8_scheme=scheme, tensorrt_importable=scheme == "tensorrt")
        manifest.engines = _engines(manifest, tmp, options, progress)
        manifest.write(tmp)
        make_readable(tmp)
        if options.triton_repo is not None:
            from salkit.export.triton_repo import write_triton_repo

            progress(f"writing Triton model repository {options.triton_repo}")
            manifest.root = tmp
            write_triton_repo(manifest, tmp, options.triton_repo, force=options.force,
                              graph_backend=options.triton_graph_backend, extra_sys_path=options.triton_sys_path)
    manifest.root = options.out
    progress(f"bundle written to {options.out}")
    return manifest


def _check_refine_maps(options: ExportOptions) -> None:
    """Refuse --refine-maps that cannot be judged before any export work: no masked --calib, the trained
    step count asked for, a folder without a map for every masked photo."""
    if not options.refine_maps:
        return
    from salkit.export.energy_steps import masked_photos, other_maps

    if options.energy_steps != "gate":
        raise SalkitError("--refine-maps judges refine's step count; it needs --energy-steps gate")
    pairs = masked_photos(options.calib) if options.calib is not None else []
    if not pairs:
        raise SalkitError("--refine-maps needs --calib photos with masks (a dataset root with gt/)")
    names = [folder.name for folder in options.refine_maps]
    if len(set(names)) != len(names):
        raise SalkitError(f"--refine-maps folders need distinct names (the table is kept per name), got {', '.join(names)}")
    for folder in options.refine_maps:
        other_maps(folder, pairs)


def _gate_refine_steps(manifest: Manifest, directory: Path, calib: Path, folders: tuple[Path, ...], progress: Progress) -> None:
    """Keep refine's own step count, judged on other models' maps (salkit.export.energy_steps)."""
    from salkit.export.energy_steps import gate_refine_steps

    gate = gate_refine_steps(directory, calib, folders, progress)
    if gate is None:
        return
    get_export_kind(manifest.model_kind).set_refine_steps(manifest, gate["chosen"])
    manifest.extra["refine_steps"] = gate
    moves = []
    for name, rows in gate["by_source"].items():
        base, kept = rows[0], rows[gate["chosen"]]
        moves.append(f"{name} MAE {base['mae']:.4f} → {kept['mae']:.4f}, S {base['s_measure']:.4f} → {kept['s_measure']:.4f}")
    progress(f"refine steps: {gate['chosen']} of the trained {gate['trained']} (on {gate['photos']} held-out photos: "
             f"{'; '.join(moves)})")
    manifest.write(directory)


def _gate_energy_steps(manifest: Manifest, directory: Path, calib: Path, progress: Progress) -> None:
    """Keep the energy's step count that helps on held-out masked photos (salkit.export.energy_steps)."""
    from salkit.export.energy_steps import gate_energy_steps

    gate = gate_energy_steps(directory, calib, progress)
    if gate is None:
        return
    get_export_kind(manifest.model_kind).set_energy_steps(manifest, gate["chosen"])
    manifest.extra["energy_steps"] = gate
    best = next(r for r in gate["by_steps"] if r["steps"] == gate["chosen"])
    base = gate["by_steps"][0]
    progress(f"energy steps: {gate['chosen']} of the trained {gate['trained']} (on {gate['photos']} held-out photos: "
             f"MAE {base['mae']:.4f} → {best['mae']:.4f}, S {base['s_measure']:.4f} → {best['s_measure']:.4f})")
    manifest.write(directory)


def _int8_scheme(options: ExportOptions) -> str:
    """``auto``: TensorRT's symmetric scheme when engines are built here, else the CPU one
    (7-bit weights where the CPU has no int8 dot product, see salkit.export.precision.artefacts)."""
    from salkit.export.engines_trt import engine_unavailable_reason
    from salkit.runtime.cpu import cpu_info

    building = options.build_engines and not engine_unavailable_reason()
    scheme = options.int8_scheme
    if scheme == "auto":
        return "tensorrt" if building else ("cpu" if cpu_info().int8_vnni else "cpu7")
    if scheme in ("cpu", "cpu7") and building and options.precision == "int8":
        raise SalkitError("--int8-scheme cpu (uint8 activations) cannot be built into TensorRT engines; "
                          "use --int8-scheme tensorrt or --no-engine")
    return scheme


def _engines(manifest: Manifest, directory: Path, options: ExportOptions, progress: Progress) -> dict[str, Any]:
    if not options.build_engines:
        return {"status": "not built", "reason": "--no-engine given", "files": {}}
    from salkit.export.engines_trt import build_engines, engine_unavailable_reason

    reason = engine_unavailable_reason()
    if reason:
        progress(f"TensorRT engines not built: {reason}")
        return {"status": "not built", "reason": reason, "files": {}}
    progress("building TensorRT engines")
    chosen = manifest.chosen_plan()
    graphs = manifest.at_precision(chosen[1]) if chosen else manifest  # engines of the chosen artefacts
    files = build_engines(graphs, directory, options.batch, progress)
    return {"status": "built", "reason": "", "files": files}
