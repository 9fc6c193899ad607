"""The bundle contract between ``export/`` (writer) and ``runtime/`` (reader).

A bundle is a directory holding ``manifest.json`` plus the ONNX graphs (and TensorRT engines
when built). This module owns the manifest schema: export builds a :class:`Manifest` and calls
:meth:`Manifest.write`; the runtime calls :func:`load_bundle`, which refuses a bundle whose
format version, file hashes or graph I/O do not match, with a message naming what is wrong.
No torch here: a serving host reads bundles without PyTorch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from salkit.kernels.errors import SalkitError

BUNDLE_FORMAT = "salkit-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DYNAMIC = -1  # marks the dynamic (batch) axis in a TensorSpec shape

# Graph names and their I/O names are part of the format: runtime loops address them by name.
REQUIRED_GRAPHS: dict[str, tuple[str, ...]] = {
    # encoder: image → feat0..featN ; latent_decoder: feat0..featN, latent → logits
    # generator: image, latent → logits ; energy: saliency, image → energy
    # energy_grad: saliency, image → grad   (saliency is in LOGIT space, see Manifest.coop)
    "coop": ("generator", "encoder", "latent_decoder", "energy", "energy_grad"),
    # encoder: image → injection (B, D) ; f: z (B, D), injection (B, D) → f_z (B, D)
    # decoder: z (B, D) → logits (B, 1, S, S)
    "qefpn": ("encoder", "f", "decoder"),
}


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

    model_kind: str  # "coop" | "qefpn"
    model_name: str  # registry name of the trained model, e.g. "coop_resnet50"
    input_size: int  # square side the graphs take
    mean: tuple[float, float, float]  # normalisation applied to RGB in [0, 1]
    std: tuple[float, float, float]
    precision: str  # "fp32" | "fp16" | "int8"
    batch: dict[str, int]  # {"min": 1, "opt": 8, "max": 16}: the engines' optimisation profile
    graphs: dict[str, GraphSpec]
    # coop: latent_dim, langevin_step (δ), langevin_steps (default K), samples (default N),
    #       map_space ("logit": Langevin runs on logits, U sees sigmoid(Y)).
    coop: dict[str, Any] = dataclasses.field(default_factory=dict)
    # qefpn: state_dim, broyden_iterations, broyden_memory, broyden_tol.
    qefpn: dict[str, Any] = dataclasses.field(default_factory=dict)
    # {"status": "built" | "not built", "reason": str, "files": {graph: {"file", "sha256"}}}
    engines: dict[str, Any] = dataclasses.field(default_factory=lambda: {"status": "not built", "reason": "", "files": {}})
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    root: Path | None = None

    def graph_path(self, name: str) -> Path:
        if self.root is None:
            raise SalkitError("manifest has no bundle directory")
        if name not in self.graphs:
            raise SalkitError(f"bundle {self.root} has no graph {name!r} (it has: {', '.join(sorted(self.graphs))})")
        return self.root / self.graphs[name].file

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("root")
        return {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION, **out}

    def write(self, directory: str | Path) -> Path:
        """Write manifest.json into ``directory`` (normally export's temporary bundle dir)."""
        from salkit.kernels.atomic import atomic_write_text

        path = Path(directory) / MANIFEST_NAME
        atomic_write_text(path, json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path


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
            mean=tuple(float(v) for v in obj["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in obj["std"]),  # type: ignore[arg-type]
            precision=str(obj["precision"]),
            batch={k: int(v) for k, v in obj["batch"].items()},
            graphs={name: GraphSpec.from_json(g) for name, g in obj["graphs"].items()},
            coop=dict(obj.get("coop", {})),
            qefpn=dict(obj.get("qefpn", {})),
            engines=dict(obj.get("engines", {})),
            versions=dict(obj.get("versions", {})),
            extra=dict(obj.get("extra", {})),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise SalkitError(f"{where}: malformed manifest ({type(err).__name__}: {err})") from None
    if manifest.model_kind not in REQUIRED_GRAPHS:
        raise SalkitError(f"{where}: unknown model kind {manifest.model_kind!r} (expected one of {sorted(REQUIRED_GRAPHS)})")
    missing = [g for g in REQUIRED_GRAPHS[manifest.model_kind] if g not in manifest.graphs]
    if missing:
        raise SalkitError(f"{where}: {manifest.model_kind} bundle lacks graphs {missing}")
    return manifest


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
        file = root / graph.file
        if not file.is_file():
            raise SalkitError(f"bundle {root}: graph {name!r} file {graph.file} is missing")
        if verify_hashes:
            actual = sha256_file(file)
            if actual != graph.sha256:
                raise SalkitError(
                    f"bundle {root}: {graph.file} has SHA-256 {actual[:12]}…, manifest says "
                    f"{graph.sha256[:12]}… (file changed or truncated; re-export)"
                )
    return manifest
