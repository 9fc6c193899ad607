"""The one description of each served model: its inputs, outputs and request parameters.

Three views are written from it, so they cannot disagree:

* the KServe v2 model metadata ``sal-runtime serve`` answers (:meth:`Interface.metadata_tensors`,
  salkit.runtime.server.models), where ``IMAGE`` is the UINT8 ``[B, H, W, 3]`` pixels the server
  takes and maps are at the image's ``H × W``;
* the model configuration in Triton's schema (:meth:`Interface.config_tensors`,
  salkit.runtime.server.model_config), where ``IMAGE`` is FP32 ``[3, S, S]`` after the implicit
  batch axis (resized and normalised), the layout both servers take, and maps are ``S × S``;
* the Triton repository's loop model ``config.pbtxt`` (salkit.export.triton_repo renders the
  configuration's entries).

The request parameters (:class:`Parameter`) are read by the server's models with
:meth:`Interface.read` and listed as ``salkit_request_parameters`` in both configurations.
A kind whose served outputs fit none of these adds its interface to :data:`INTERFACES`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from salkit.base.errors import SalkitError
from salkit.runtime.frontend import UNCERTAINTY_CHANNELS
from salkit.runtime.server.protocol import ProtocolError

MAX_SAMPLES = 64
MAX_STEPS = 256


@dataclasses.dataclass(frozen=True)
class Tensor:
    """``form``: "image" (the photo), "map" (``channels`` × H × W per image) or "value" (one number per image)."""

    name: str
    form: str
    channels: int = 1

    def metadata(self) -> dict[str, Any]:
        """The v2 metadata entry: UINT8 pixels in, FP32 maps at the image's size out."""
        shape = {"image": [-1, -1, -1, 3], "map": [-1, self.channels, -1, -1], "value": [-1]}[self.form]
        return {"name": self.name, "datatype": "UINT8" if self.form == "image" else "FP32", "shape": shape}

    def config(self, size: int) -> dict[str, Any]:
        """The Triton config entry (batch axis implicit): FP32 at S × S; a value is dims [1] reshaped to []."""
        if self.form == "value":
            return {"name": self.name, "data_type": "TYPE_FP32", "dims": [1], "reshape": {"shape": []}}
        return {"name": self.name, "data_type": "TYPE_FP32", "dims": [3 if self.form == "image" else self.channels, size, size]}


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A request parameter: an INT64 in [low, high] or a BOOL (``default`` when the request leaves it out)."""

    name: str
    datatype: str
    low: int = 0
    high: int = 0
    default: Any = None

    def read(self, params: dict[str, Any]) -> Any:
        value = params.get(self.name, self.default)
        if self.datatype == "BOOL":
            if not isinstance(value, bool):
                raise ProtocolError(f"parameter {self.name!r} must be true or false, got {value!r}")
            return value
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise ProtocolError(f"parameter {self.name!r} must be an integer in [{self.low}, {self.high}], got {value!r}")
        return value


@dataclasses.dataclass(frozen=True)
class Interface:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    parameters: tuple[Parameter, ...]

    def metadata_tensors(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return [t.metadata() for t in self.inputs], [t.metadata() for t in self.outputs]

    def config_tensors(self, size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return [t.config(size) for t in self.inputs], [t.config(size) for t in self.outputs]

    def request_parameters(self) -> dict[str, str]:
        """Name → datatype, as the configs' ``salkit_request_parameters`` list them."""
        return {p.name: p.datatype for p in self.parameters}

    def read(self, params: dict[str, Any]) -> dict[str, Any]:
        """The request's parameters checked against their ranges, name → value (None: the bundle's default)."""
        return {p.name: p.read(params) for p in self.parameters}


IMAGE = Tensor("IMAGE", "image")
STEPS = Parameter("steps", "INT64", 0, MAX_STEPS)  # Langevin steps (coop) or Broyden iterations (QE-FPN)

INTERFACES: dict[str, Interface] = {
    interface.name: interface
    for interface in (
        Interface(
            "saliency",
            (IMAGE,),
            (Tensor("SALIENCY", "map"), Tensor("UNCERTAINTY", "map", len(UNCERTAINTY_CHANNELS))),
            (Parameter("samples", "INT64", 1, MAX_SAMPLES), STEPS, Parameter("noise", "BOOL", default=False),
             Parameter("seed", "INT64", 0, 2**63 - 1)),
        ),
        Interface("qefpn", (IMAGE,), (Tensor("SALIENCY", "map"), Tensor("ITERATIONS", "value"), Tensor("RESIDUAL", "value")), (STEPS,)),
        Interface("refine", (IMAGE, Tensor("MAP", "map")), (Tensor("MAP", "map"),), (STEPS,)),
    )
}


def interface_of(name: str) -> Interface:
    if name not in INTERFACES:
        raise SalkitError(f"no served-model interface {name!r} (known: {', '.join(INTERFACES)})")
    return INTERFACES[name]
