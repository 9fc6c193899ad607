"""The models a server exposes for one bundle, in KServe v2 terms.

Which models a bundle serves is its kind's (``RuntimeKind.served_models``, names in
:data:`SERVED_MODELS`): a coop bundle serves ``saliency`` and ``refine``; a QE-FPN bundle ``qefpn``.
Each model's inputs, outputs and request parameters are its one description in
salkit.runtime.server.interface (its metadata here, its model configuration and the Triton
repository's ``config.pbtxt`` are written from it); its pre- and post-processing is the image
front end the Python API runs (salkit.runtime.frontend).

``IMAGE`` is accepted in two layouts:

* ``UINT8 [B, H, W, 3]``: RGB pixels of B images of one size. The server resizes them to the
  bundle's input size and normalises them; maps come back at ``H × W``.
* ``FP32 [B, 3, S, S]``: already resized to the bundle's S and normalised with its mean/std
  (what ``salkit.base.images.preprocess`` returns); maps come back at ``S × S``.

A request with a ``seed`` runs in a batch of its own, so it is reproducible; leaving
``UNCERTAINTY`` out of the requested outputs skips computing it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from typing import Any

import numpy as np

from salkit.runtime.batching_predictor import BatchingPredictor
from salkit.runtime.frontend import UNCERTAINTY_CHANNELS, FrontEnd
from salkit.runtime.inputs import Batch
from salkit.runtime.kinds import get_kind
from salkit.runtime.server.interface import Interface, Tensor, interface_of
from salkit.runtime.server.protocol import InferRequest, ProtocolError
from salkit.runtime.server.stats import RequestTrace


@dataclasses.dataclass
class Prepared:
    """An IMAGE input turned into the model's normalised batch and sizes (salkit.runtime.frontend)."""

    batch: Batch  # x (B, 3, S, S) float32; sizes: the client's (H, W) per image, None to keep S × S
    maps: np.ndarray | None = None  # refine: (B, 1, S, S) probabilities
    given: list[np.ndarray] | None = None  # refine: the MAP input per image, (H, W) at its image's size


async def _back(maps: np.ndarray, prepared: Prepared, clip: bool = False) -> np.ndarray:
    """The front end's maps back at the client's size, off the event loop: large images take a while to resize."""
    if prepared.batch.sizes is None:
        return FrontEnd.back_batch(maps, prepared.batch, clip=clip)
    return await asyncio.to_thread(FrontEnd.back_batch, maps, prepared.batch, clip=clip)


async def _batched(future: concurrent.futures.Future, trace: RequestTrace | None) -> Any:
    """Await a batcher future; the trace learns the request's queue wait and backend time."""
    result = await asyncio.wrap_future(future)
    if trace is not None:
        trace.batched(getattr(future, "timing", None))
    return result


class ServedModel:
    """One KServe v2 model over a shared BatchingPredictor."""

    name: str = ""
    op: str = "predict"  # the BatchingPredictor operation its backend calls run

    def __init__(self, batching: BatchingPredictor) -> None:
        self.interface: Interface = interface_of(self.name)  # inputs, outputs, parameters (salkit.runtime.server.interface)
        self.batching = batching
        self.manifest = batching.manifest
        self.front = FrontEnd(self.manifest)

    @property
    def inputs(self) -> tuple[Tensor, ...]:
        return self.interface.inputs

    @property
    def outputs(self) -> tuple[Tensor, ...]:
        return self.interface.outputs

    def metadata(self) -> dict[str, Any]:
        inputs, outputs = self.interface.metadata_tensors()
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": f"salkit_{self.manifest.model_kind}",
            "inputs": inputs,
            "outputs": outputs,
        }

    def check_request(self, request: InferRequest) -> list[str]:
        """Input names as declared and the requested outputs (all when none are named)."""
        expected = {t.name for t in self.inputs}
        given = set(request.inputs)
        if given != expected:
            unknown, missing = sorted(given - expected), sorted(expected - given)
            parts = ([f"unknown input(s) {unknown}"] if unknown else []) + ([f"missing input(s) {missing}"] if missing else [])
            raise ProtocolError(f"model {self.name!r}: {'; '.join(parts)} (it takes {sorted(expected)})")
        names = [t.name for t in self.outputs]
        if request.outputs is None:
            return names
        unknown_out = sorted(set(request.outputs) - set(names))
        if unknown_out:
            raise ProtocolError(f"model {self.name!r} has no output(s) {unknown_out} (it has {names})")
        return [n for n in names if n in request.outputs]

    def prepare(self, request: InferRequest) -> Prepared:
        """Validate the inputs and build the model's batch (the server runs this in a thread)."""
        return self.prepare_image(request)

    def prepare_image(self, request: InferRequest) -> Prepared:
        """The IMAGE tensor's layout (the wire's), then the front end's batch."""
        image = request.inputs["IMAGE"]
        datatype = request.datatypes["IMAGE"]
        size = self.manifest.input_size
        if datatype == "UINT8":
            if image.ndim != 4 or image.shape[3] != 3 or 0 in image.shape:
                raise ProtocolError(f"UINT8 IMAGE must have shape [B, H, W, 3] with B, H, W >= 1, got {list(image.shape)}")
            return Prepared(self.front.images(list(image)))
        if datatype == "FP32":
            if image.shape[1:] != (3, size, size) or image.ndim != 4 or image.shape[0] == 0:
                raise ProtocolError(
                    f"FP32 IMAGE must be normalised NCHW [B, 3, {size}, {size}] for this bundle, got {list(image.shape)}"
                )
            return Prepared(self.front.normalised(image, name="FP32 IMAGE"))
        raise ProtocolError(f"IMAGE must be UINT8 [B, H, W, 3] or FP32 [B, 3, {size}, {size}], got datatype {datatype}")

    async def infer(
        self, request: InferRequest, prepared: Prepared, wanted: list[str], trace: RequestTrace | None = None
    ) -> dict[str, np.ndarray]:
        raise NotImplementedError


class SaliencyModel(ServedModel):
    name = "saliency"

    def options(self, request: InferRequest, wanted: list[str]) -> dict[str, Any]:
        return {**self.interface.read(request.parameters), "uncertainty": "UNCERTAINTY" in wanted}

    async def infer(
        self, request: InferRequest, prepared: Prepared, wanted: list[str], trace: RequestTrace | None = None
    ) -> dict[str, np.ndarray]:
        result = await _batched(self.batching.submit_predict(prepared.batch.x, **self.options(request, wanted)), trace)
        out = {"SALIENCY": await _back(result["saliency"], prepared, clip=True)}
        if "UNCERTAINTY" in wanted:
            stacked = np.concatenate([result[k] for k in UNCERTAINTY_CHANNELS], axis=1)  # 3 × (B,1,S,S) → (B,3,S,S)
            out["UNCERTAINTY"] = await _back(stacked, prepared)
        return {k: out[k] for k in wanted}


class QEFPNModel(SaliencyModel):
    name = "qefpn"

    async def infer(
        self, request: InferRequest, prepared: Prepared, wanted: list[str], trace: RequestTrace | None = None
    ) -> dict[str, np.ndarray]:
        options = self.interface.read(request.parameters)  # steps: Broyden iterations
        result = await _batched(self.batching.submit_predict(prepared.batch.x, **options, uncertainty=False), trace)
        rows = len(prepared.batch.x)
        out = {
            "SALIENCY": await _back(result["saliency"], prepared, clip=True),
            "ITERATIONS": np.asarray(result.get("iterations", np.zeros(rows)), dtype=np.float32),
            "RESIDUAL": np.asarray(result.get("residual", np.zeros(rows)), dtype=np.float32),
        }
        return {k: out[k] for k in wanted}


class RefineModel(ServedModel):
    name = "refine"
    op = "refine"

    def prepare(self, request: InferRequest) -> Prepared:
        prepared = self.prepare_image(request)
        prepared.given = self.prepare_map(request, prepared)
        prepared.maps = self.front.starts(prepared.given)
        return prepared

    def prepare_map(self, request: InferRequest, prepared: Prepared) -> list[np.ndarray]:
        """The MAP tensor's layout (the wire's: one FP32 map per image at its size), then the front end's checks."""
        maps = request.inputs["MAP"]
        if request.datatypes["MAP"] != "FP32":
            raise ProtocolError(f"MAP must be FP32 probabilities, got datatype {request.datatypes['MAP']}")
        batch = prepared.batch
        height, width = batch.sizes[0] if batch.sizes is not None else batch.x.shape[2:]
        expected = (batch.x.shape[0], 1, height, width)
        if maps.shape != expected:
            raise ProtocolError(f"MAP must have shape {list(expected)} to match IMAGE, got {list(maps.shape)}")
        return self.front.given_maps(list(maps[:, 0]), batch, name="MAP")

    async def infer(
        self, request: InferRequest, prepared: Prepared, wanted: list[str], trace: RequestTrace | None = None
    ) -> dict[str, np.ndarray]:
        options = self.interface.read(request.parameters)
        refined = await _batched(self.batching.submit_refine(prepared.batch.x, prepared.maps, **options), trace)

        def back() -> np.ndarray:  # the given map plus refine's change (FrontEnd.back_refined), one array
            return np.ascontiguousarray(np.stack(FrontEnd.back_refined(np.asarray(refined), prepared.maps, prepared.given)))

        return {"MAP": back() if prepared.batch.sizes is None else await asyncio.to_thread(back)}


# The models a kind can serve, by name (RuntimeKind.served_models names them; the kind's first
# model takes /predict). A kind whose outputs fit none of these adds its class here and its
# interface to salkit.runtime.server.interface.INTERFACES.
SERVED_MODELS: dict[str, type[ServedModel]] = {cls.name: cls for cls in (SaliencyModel, QEFPNModel, RefineModel)}


def models_for(batching: BatchingPredictor) -> dict[str, ServedModel]:
    """The served models of the bundle's kind, its entry model first."""
    names = get_kind(batching.manifest.model_kind).served_models
    return {name: SERVED_MODELS[name](batching) for name in names}
