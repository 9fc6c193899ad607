"""A Triton Inference Server model repository for a bundle (``export-trt --triton-repo DIR``).

Layout::

    DIR/<prefix><graph>/config.pbtxt, 1/model.plan | 1/model.onnx   one model per bundle graph
    DIR/<entry>/config.pbtxt, 1/model.py, 1/_salkit_prelude.py, 1/salkit_loop.py,
                1/salkit/kernels/*.py, 1/salkit/base/errors.py        the loop (Python backend, BLS)

``<prefix>`` is the model kind and ``_`` (``coop_``, ``qefpn_``); ``<entry>`` is the kind's first
served model, the name ``sal-runtime serve`` gives it (``saliency`` for coop, ``qefpn``);
``salkit_loop.py`` is the kind's Triton loop (``ExportKind.triton_loop``, e.g. ``loop_coop.py``). The
files these models run come from :mod:`salkit.export.triton`.
Graph models use TensorRT plans when the bundle has engines (``tensorrt_plan``, GPU instances)
and the ONNX graphs otherwise (``onnxruntime_onnx``, CPU instances unless told otherwise). ``max_batch_size`` is the bundle's profile maximum, so the
batch axis is implicit in ``dims``; every model has dynamic batching. The loop model carries the
bundle's settings as a JSON ``parameters`` entry and a copy of ``salkit.kernels`` (numpy only) with
``salkit.base.errors``, the one module of salkit it imports.

Graph models carry the artefacts of the bundle's recorded precision choice (``precision_choice``:
the int8 ONNX of a graph the gate passed in int8, the float32 graph otherwise).
``graph_backend="openvino"`` writes them for Triton's OpenVINO backend (``backend: "openvino"``,
``model.onnx``, one latency stream; ``HINT_BF16`` when the choice is an OpenVINO bf16 plan).

``graph_backend="python"`` writes each graph as a Python-backend model instead (``1/model.py``
running ``1/model.onnx`` with ONNX Runtime, CPU instances), for Triton builds that carry only the
Python backend. ``extra_sys_path`` becomes an ``EXTRA_SYS_PATH`` parameter of every Python-backend
model: directories with numpy (< 2 for the stub) and onnxruntime, prepended to the stub's sys.path.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path

from salkit.base.atomic import atomic_directory, make_readable
from salkit.base.errors import SalkitError
from salkit.export.kinds import get_export_kind
from salkit.runtime.bundle import Manifest, TensorSpec
from salkit.runtime.kinds import get_kind
from salkit.runtime.server import model_config

TRITON_SIDE = "salkit.export.triton"  # the package of the files the repository's models run

TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
         "uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "bool": "TYPE_BOOL"}
GRAPH_BACKENDS = ("auto", "onnxruntime", "openvino", "python")
QUEUE_DELAY_US = 500


def _tensor(spec: TensorSpec) -> dict:
    """A graph tensor as a Triton config entry (the form salkit.runtime.server.model_config uses)."""
    if spec.dtype not in TYPES:
        raise SalkitError(f"tensor {spec.name!r} has dtype {spec.dtype} that Triton configs cannot express")
    if len(spec.shape) == 1:
        # A (B,) tensor has no dims beyond the batch; Triton wants non-empty dims: [ 1 ] reshaped to [ ].
        return {"name": spec.name, "data_type": TYPES[spec.dtype], "dims": [1], "reshape": {"shape": []}}
    return {"name": spec.name, "data_type": TYPES[spec.dtype], "dims": list(spec.shape[1:])}  # batch axis implicit


def _render_tensor(entry: dict) -> str:
    dims = ", ".join(str(d) for d in entry["dims"])
    name, data_type = entry["name"], entry["data_type"]
    text = f'  {{ name: "{name}" data_type: {data_type} dims: [ {dims} ]'
    if "reshape" in entry:
        shape = ", ".join(str(d) for d in entry["reshape"]["shape"])
        text += f" reshape: {{ shape: [ {shape} ] }}"
    return text + " }"


def _io_block(key: str, entries: list[dict]) -> str:
    return f"{key} [\n" + ",\n".join(_render_tensor(e) for e in entries) + "\n]\n"


def _string_param(key: str, value: str) -> str:
    return f"parameters: {{ key: {json.dumps(key)} value: {{ string_value: {json.dumps(value)} }} }}\n"


def _common(max_batch: int, preferred: int, kind: str) -> str:
    return (f"max_batch_size: {max_batch}\n"
            f"dynamic_batching {{ preferred_batch_size: [ {preferred} ] max_queue_delay_microseconds: {QUEUE_DELAY_US} }}\n"
            f"instance_group [ {{ kind: {kind} count: 1 }} ]\n")


def _extra_path_param(extra_sys_path: list[str]) -> str:
    if not extra_sys_path:
        return ""
    return f'parameters: {{ key: "EXTRA_SYS_PATH" value: {{ string_value: "{os.pathsep.join(extra_sys_path)}" }} }}\n'


def _param(key: str, value: str) -> str:
    return f'parameters: {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'


def _openvino_params(precision: str) -> str:
    """One stream with the latency hint: the loop sends one batch at a time to each graph."""
    return _param("NUM_STREAMS", "1") + _param("PERFORMANCE_HINT", "LATENCY") + (
        _param("HINT_BF16", "YES") if precision == "bf16" else "")


def graph_config(name: str, platform: str, manifest: Manifest, graph: str, instance_kind: str,
                 extra_sys_path: list[str] | None = None, precision: str = "fp32") -> str:
    """``platform`` is a Triton platform (onnxruntime_onnx, tensorrt_plan) or a backend: "python"
    or "openvino" (``precision`` then picks its compile hint)."""
    spec = manifest.graphs[graph]
    if platform in ("python", "openvino"):
        head = f'backend: "{platform}"\n' + ('default_model_filename: "model.onnx"\n' if platform == "openvino" else "")
    else:
        head = f'platform: "{platform}"\n'
    tail = {"python": _extra_path_param(extra_sys_path or []), "openvino": _openvino_params(precision)}.get(platform, "")
    return (f'name: "{name}"\n' + head + _common(manifest.batch["max"], manifest.batch["opt"], instance_kind)
            + _io_block("input", [_tensor(t) for t in spec.inputs]) + _io_block("output", [_tensor(t) for t in spec.outputs])
            + tail)


def entry_config(name: str, manifest: Manifest, settings: dict, extra_sys_path: list[str] | None = None) -> str:
    """The loop model's config: the interface ``sal-runtime serve`` reports for ``name`` (shared
    description in salkit.runtime.server.model_config), with the loop's wiring in its settings."""
    inputs, outputs = model_config.tensor_configs(name, manifest.input_size)
    body = _io_block("input", inputs) + _io_block("output", outputs)
    params = "".join(_string_param(k, v) for k, v in model_config.shared_parameters(name, settings).items())
    # The loop itself is cheap host work around the graph models: CPU instances.
    return (f'name: "{name}"\nbackend: "python"\n' + _common(manifest.batch["max"], manifest.batch["opt"], "KIND_CPU")
            + body + params + _extra_path_param(extra_sys_path or []))


def loop_settings(manifest: Manifest, prefix: str) -> dict:
    """The model's settings plus the loop's wiring: graph model name prefix, encoder feature names."""
    return {**model_config.model_settings(manifest), "prefix": prefix,
            **get_export_kind(manifest.model_kind).triton_settings(manifest)}


def _copy_kernels(target: Path) -> None:
    """salkit.kernels (numpy-only modules) next to model.py, importable as salkit.kernels, with the
    one module of salkit.base they import (salkit.base.errors, standard library only)."""
    kernels = resources.files("salkit.kernels")
    package = target / "salkit" / "kernels"
    package.mkdir(parents=True)
    (target / "salkit" / "__init__.py").write_text('"""The part of salkit the Triton loop model needs."""\n')
    for entry in kernels.iterdir():
        if entry.name.endswith(".py"):
            (package / entry.name).write_text(entry.read_text())
    base = target / "salkit" / "base"
    base.mkdir()
    (base / "__init__.py").write_text('"""salkit.base.errors, which salkit.kernels imports."""\n')
    (base / "errors.py").write_text(resources.files("salkit.base").joinpath("errors.py").read_text())


def _checked_sys_path(extra_sys_path: list[str] | tuple[str, ...] | None) -> list[str]:
    entries = [str(Path(p).resolve()) for p in extra_sys_path or []]
    for entry in entries:
        if '"' in entry or "\\" in entry or os.pathsep in entry:
            raise SalkitError(f"extra sys.path entry {entry!r} cannot contain '\"', '\\' or {os.pathsep!r}")
    return entries


def write_triton_repo(manifest: Manifest, bundle_dir: Path, repo: Path, *, force: bool = False,
                      instance_kind: str | None = None, graph_backend: str = "auto",
                      extra_sys_path: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """Write the repository atomically; returns the model names.

    graph_backend: "auto" (TensorRT plans if the bundle has engines, else ONNX Runtime),
    "onnxruntime" (ONNX graphs on Triton's onnxruntime backend), "openvino" (ONNX graphs on
    Triton's OpenVINO backend) or "python" (ONNX graphs run by ONNX Runtime inside Python-backend
    models).
    """
    if graph_backend not in GRAPH_BACKENDS:
        raise SalkitError(f"unknown Triton graph backend {graph_backend!r} (choose from {', '.join(GRAPH_BACKENDS)})")
    extra = _checked_sys_path(extra_sys_path)
    engines = manifest.engines.get("status") == "built" and graph_backend == "auto"
    platform = {"auto": "tensorrt_plan" if engines else "onnxruntime_onnx", "onnxruntime": "onnxruntime_onnx",
                "openvino": "openvino", "python": "python"}[graph_backend]
    chosen = manifest.chosen_plan()
    precision = chosen[1] if chosen else manifest.precision
    artefacts = manifest.at_precision(precision)  # the chosen artefacts (float32 graphs for bf16)
    kind = instance_kind or ("KIND_GPU" if engines else "KIND_CPU")
    graph_model = resources.files(TRITON_SIDE).joinpath("graph_model.py").read_text()
    prelude = resources.files(TRITON_SIDE).joinpath("prelude.py").read_text()
    prefix = f"{manifest.model_kind}_"
    names = []
    with atomic_directory(repo, force=force) as tmp:
        for graph in manifest.graphs:
            name = prefix + graph
            version = tmp / name / "1"
            version.mkdir(parents=True)
            if engines:
                shutil.copyfile(bundle_dir / manifest.engines["files"][graph]["file"], version / "model.plan")
            else:
                shutil.copyfile(bundle_dir / artefacts.graphs[graph].file, version / "model.onnx")
            if platform == "python":
                (version / "model.py").write_text(graph_model)
                (version / "_salkit_prelude.py").write_text(prelude)
            (tmp / name / "config.pbtxt").write_text(graph_config(name, platform, manifest, graph, kind, extra, precision))
            names.append(name)
        entry = get_kind(manifest.model_kind).served_models[0]
        version = tmp / entry / "1"
        version.mkdir(parents=True)
        (version / "model.py").write_text(resources.files(TRITON_SIDE).joinpath("loop_model.py").read_text())
        loop = get_export_kind(manifest.model_kind).triton_loop
        (version / "salkit_loop.py").write_text(resources.files(TRITON_SIDE).joinpath(loop).read_text())
        (version / "_salkit_prelude.py").write_text(prelude)
        _copy_kernels(version)
        (tmp / entry / "config.pbtxt").write_text(entry_config(entry, manifest, loop_settings(manifest, prefix), extra))
        names.append(entry)
        make_readable(tmp)
    return names
