"""The bundle contract between ``export/`` (writer) and ``runtime/`` (reader).

A bundle is a directory holding ``manifest.json`` plus the ONNX graphs (and TensorRT engines
when built). This module owns the manifest schema: export builds a :class:`Manifest` and calls
:meth:`Manifest.write`; the runtime calls :func:`load_bundle`, which refuses a bundle whose
format version, file hashes or graph I/O do not match, with a message naming what is wrong.
Whether the model kind is known and the bundle holds the graphs it needs is the kind's check
(``salkit.runtime.kinds.kind_of``, which the Predictor, bench and serve run on loading).
No torch here: a serving host reads bundles without PyTorch.

Precision (docs/export.md, "Precision"). ``graphs`` are the float32 reference graphs, always
present. Lower-precision ONNX artefacts sit beside them in ``variants`` (precision → graph →
``{"file", "sha256", "validation"}``); a graph a precision leaves alone has no entry there and
runs its float32 graph in that precision's plan. A *plan* is ``"<backend>:<precision>"``
(``"ort-cpu:int8"``, ``"openvino:bf16"``); bf16 is a compile hint with no artefact of its own.
``precision_gate`` holds each candidate plan's verdict on the final maps
(``{"passed", "saliency_mean_abs", "saliency_max_abs", "entropy_mean_abs", "reason", …}``) and
``precision_choice`` the plan export measured fastest among those that passed, with the CPU it was
measured on (``{"plan", "cpu", "reason", "seconds"}``). Manifests written before these fields
load as float32 only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from salkit.base.errors import SalkitError

BUNDLE_FORMAT = "salkit-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
REFERENCE_PRECISION = "fp32"
ARTEFACT_PRECISIONS = ("fp16", "int8")  # precisions stored as ONNX files of their own
HINT_PRECISIONS = ("bf16",)  # precisions a backend compiles the float32 graphs to
DYNAMIC = -1  # marks the dynamic (batch) axis in a TensorSpec shape

# Graph names and their I/O names are part of the format: runtime loops address them by name.
# Which graphs a bundle of each model kind must hold is the kind's (salkit.runtime.kinds).


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # DYNAMIC (-1) for the batch axis
    dtype: str  # numpy dtype name: "float32", "float16", "uint8", "int64"

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "TensorSpec":
        return cls(name=str(obj["name"]), shape=tuple(int(d) for d in obj["shape"]), dtype=str(obj["dtype"]))


@dataclasses.dataclass(frozen=True)
class GraphSpec:
    file: str  # relative to the bundle directory
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    validation: dict[str, float] = dataclasses.field(default_factory=dict)  # max_abs_err, max_rel_err …

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "GraphSpec":
        return cls(
            file=str(obj["file"]),
            sha256=str(obj["sha256"]),
            inputs=tuple(TensorSpec.from_json(t) for t in obj["inputs"]),
            outputs=tuple(TensorSpec.from_json(t) for t in obj["outputs"]),
            validation={k: float(v) for k, v in obj.get("validation", {}).items()},
        )


@dataclasses.dataclass
class Manifest:
    """Parsed ``manifest.json``. ``root`` is the bundle directory (not serialised)."""

    model_kind: str  # a registered kind (salkit.runtime.kinds): "coop" | "qefpn"
    model_name: str  # registry name of the trained model, e.g. "coop_resnet50"
    input_size: int  # square side the graphs take
    mean: tuple[float, float, float]  # normalisation applied to RGB in [0, 1]
    std: tuple[float, float, float]
    precision: str  # of the ``graphs`` files: "fp32" (older bundles could hold fp16/int8 graphs there)
    batch: dict[str, int]  # {"min": 1, "opt": 8, "max": 16}: the engines' optimisation profile
    graphs: dict[str, GraphSpec]
    # The kinds' loop settings, each under the kind's name (other kinds keep theirs in extra[<kind>]).
    # coop: latent_dim, langevin_step (δ), langevin_steps (default K), samples (default N),
    #       refine_steps (refine's default K when the export judged it apart; else langevin_steps),
    #       map_space ("logit": Langevin runs on logits, U sees sigmoid(Y)).
    coop: dict[str, Any] = dataclasses.field(default_factory=dict)
    # qefpn: state_dim, broyden_iterations, broyden_memory, broyden_tol.
    qefpn: dict[str, Any] = dataclasses.field(default_factory=dict)
    # {"status": "built" | "not built", "reason": str, "files": {graph: {"file", "sha256"}}}
    engines: dict[str, Any] = dataclasses.field(default_factory=lambda: {"status": "not built", "reason": "", "files": {}})
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    # precision → graph → {"file", "sha256", "validation"}: lower-precision artefacts beside ``graphs``.
    variants: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    # plan "<backend>:<precision>" → {"passed": bool, "saliency_mean_abs", …, "reason"}
    precision_gate: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # {"plan": "<backend>:<precision>", "cpu": CPU model, "reason": str, "seconds": {plan: s}}; {} = fp32
    precision_choice: dict[str, Any] = dataclasses.field(default_factory=dict)
    root: Path | None = None

    def graph_path(self, name: str) -> Path:
        if self.root is None:
            raise SalkitError("manifest has no bundle directory")
        if name not in self.graphs:
            raise SalkitError(f"bundle {self.root} has no graph {name!r} (it has: {', '.join(sorted(self.graphs))})")
        return self.root / self.graphs[name].file

    # -- precision ---------------------------------------------------------------------------
    def precisions(self) -> list[str]:
        """Precisions with artefacts in this bundle: the reference first, then the variants."""
        return [self.precision, *sorted(p for p in self.variants if p != self.precision)]

    def graph_spec(self, name: str, precision: str = REFERENCE_PRECISION) -> GraphSpec:
        """The spec of graph ``name`` in ``precision``: its variant if it has one, else the
        reference graph (graphs a precision leaves alone, and hint precisions such as bf16)."""
        if name not in self.graphs:
            raise SalkitError(f"bundle {self.root} has no graph {name!r} (it has: {', '.join(sorted(self.graphs))})")
        reference = self.graphs[name]
        if precision == self.precision or precision in HINT_PRECISIONS:
            return reference
        if precision not in self.variants:
            have = ", ".join(self.precisions())
            raise SalkitError(f"bundle {self.root} has no {precision} artefacts (it has: {have})")
        variant = self.variants[precision].get(name)
        if variant is None:
            return reference
        return dataclasses.replace(reference, file=str(variant["file"]), sha256=str(variant["sha256"]),
                                   validation={k: float(v) for k, v in variant.get("validation", {}).items()})

    def at_precision(self, precision: str, reference_graphs: tuple[str, ...] = ()) -> "Manifest":
        """A copy whose ``graphs`` are the ``precision`` artefacts, except ``reference_graphs``
        (kept float32: how the precision gate finds which graph is to blame; their variants leave
        the copy too, so a runner asked for ``precision`` by name runs them in float32 as well)."""
        graphs = {name: spec if name in reference_graphs else self.graph_spec(name, precision)
                  for name, spec in self.graphs.items()}
        variants = {p: {g: v for g, v in by_graph.items() if g not in reference_graphs} if p == precision else by_graph
                    for p, by_graph in self.variants.items()}
        return dataclasses.replace(self, graphs=graphs, variants=variants)

    def gate_passed(self, plan: str) -> bool:
        """Whether ``plan`` may be used: the reference precision always; others only when the
        precision gate recorded a pass for exactly this plan."""
        _, precision = split_plan(plan)
        if precision == self.precision:
            return True
        return bool(self.precision_gate.get(plan, {}).get("passed", False))

    def chosen_plan(self) -> tuple[str, str] | None:
        """(backend, precision) export measured fastest here, or None (bundles before the choice)."""
        plan = self.precision_choice.get("plan")
        return split_plan(plan) if plan else None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("root")
        return {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION, **out}

    def write(self, directory: str | Path) -> Path:
        """Write manifest.json into ``directory`` (normally export's temporary bundle dir)."""
        from salkit.base.atomic import atomic_write_text

        path = Path(directory) / MANIFEST_NAME
        atomic_write_text(path, json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path


def plan_name(backend: str, precision: str) -> str:
    return f"{backend}:{precision}"


def split_plan(plan: str) -> tuple[str, str]:
    """"ort-cpu:int8" → ("ort-cpu", "int8")."""
    backend, sep, precision = str(plan).rpartition(":")
    if not sep or not backend or not precision:
        raise SalkitError(f"precision plan {plan!r} is not of the form <backend>:<precision>, e.g. ort-cpu:int8")
    return backend, precision


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parse(obj: dict[str, Any], where: Path) -> Manifest:
    if obj.get("format") != BUNDLE_FORMAT:
        raise SalkitError(f"{where} is not a salkit bundle manifest (format={obj.get('format')!r})")
    version = obj.get("format_version")
    if version != BUNDLE_FORMAT_VERSION:
        raise SalkitError(
            f"{where}: bundle format version {version!r} is not supported "
            f"(this salkit reads version {BUNDLE_FORMAT_VERSION}); re-export the checkpoint"
        )
    try:
        manifest = Manifest(
            model_kind=str(obj["model_kind"]),
            model_name=str(obj["model_name"]),
            input_size=int(obj["input_size"]),
            mean=tuple(float(v) for v in obj["mean"]),
            std=tuple(float(v) for v in obj["std"]),
            precision=str(obj["precision"]),
            batch={k: int(v) for k, v in obj["batch"].items()},
            graphs={name: GraphSpec.from_json(g) for name, g in obj["graphs"].items()},
            coop=dict(obj.get("coop", {})),
            qefpn=dict(obj.get("qefpn", {})),
            engines=dict(obj.get("engines", {})),
            versions=dict(obj.get("versions", {})),
            extra=dict(obj.get("extra", {})),
            variants={str(p): {str(g): dict(v) for g, v in graphs.items()} for p, graphs in obj.get("variants", {}).items()},
            precision_gate={str(plan): dict(v) for plan, v in obj.get("precision_gate", {}).items()},
            precision_choice=dict(obj.get("precision_choice", {})),
        )
        for precision, graphs in manifest.variants.items():
            for name, variant in graphs.items():
                if name not in manifest.graphs or not {"file", "sha256"} <= set(variant):
                    raise KeyError(f"variants.{precision}.{name} needs a graph of the bundle, a file and a sha256")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise SalkitError(f"{where}: malformed manifest ({type(err).__name__}: {err})") from None
    chosen = manifest.chosen_plan()
    if chosen is not None:
        precision = chosen[1]
        known = precision in (manifest.precision, *HINT_PRECISIONS) or precision in manifest.variants
        if not known:
            raise SalkitError(f"{where}: the recorded precision choice {manifest.precision_choice['plan']} has no "
                              f"{precision} artefacts in the bundle (it has: {', '.join(manifest.precisions())})")
    return manifest


def _check_file(root: Path, file: str, sha256: str, what: str, verify_hash: bool, note: str = "") -> None:
    path = root / file
    if not path.is_file():
        raise SalkitError(f"bundle {root}: {what} file {file} is missing{note}")
    if verify_hash:
        actual = sha256_file(path)
        if actual != sha256:
            raise SalkitError(
                f"bundle {root}: {file} has SHA-256 {actual[:12]}…, manifest says "
                f"{sha256[:12]}… (file changed or truncated; re-export)"
            )


def load_bundle(path: str | Path, *, verify_hashes: bool = True) -> Manifest:
    """Read and validate a bundle directory: format version, graph files present, SHA-256 match."""
    root = Path(path)
    if not root.is_dir():
        raise SalkitError(f"bundle {root} does not exist or is not a directory")
    manifest_path = root / MANIFEST_NAME
    try:
        obj = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SalkitError(f"{root} has no {MANIFEST_NAME}: not a bundle written by export-trt") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SalkitError(f"{manifest_path} is not valid JSON ({err})") from None
    if not isinstance(obj, dict):
        raise SalkitError(f"{manifest_path} is not a JSON object")
    manifest = _parse(obj, manifest_path)
    manifest.root = root
    for name, graph in manifest.graphs.items():
        _check_file(root, graph.file, graph.sha256, f"graph {name!r}", verify_hashes)
    chosen = manifest.chosen_plan()
    for precision, graphs in manifest.variants.items():
        note = f" (the recorded precision choice {manifest.precision_choice['plan']} needs it)" if chosen and chosen[1] == precision else ""
        for name, variant in graphs.items():
            _check_file(root, str(variant["file"]), str(variant["sha256"]), f"{precision} artefact of graph {name!r}",
                        verify_hashes, note)
    return manifest
