"""A stand-in for Triton's ``triton_python_backend_utils``: BLS requests run the repository's ONNX
models with ONNX Runtime, so the loop model can be executed without a Triton server."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


class TritonModelException(Exception):
    pass


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
        self.output_tensors, self._error = output_tensors, error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


class Request:
    """What Triton hands ``execute``: named input tensors and JSON request parameters."""

    def __init__(self, inputs: dict[str, np.ndarray], parameters: dict | None = None) -> None:
        self.inputs = [Tensor(k, v) for k, v in inputs.items()]
        self._parameters = json.dumps(parameters or {})

    def parameters(self) -> str:
        return self._parameters


def install(repo: Path) -> types.ModuleType:
    """Register the fake module (BLS routed to ``repo``'s ONNX models) and return it."""
    sessions: dict[str, ort.InferenceSession] = {}
    calls: list[tuple[str, int]] = []

    class InferenceRequest:
        def __init__(self, model_name: str, requested_output_names: list[str], inputs: list[Tensor]) -> None:
            self.model_name, self.outputs, self.inputs = model_name, requested_output_names, inputs

        def exec(self) -> InferenceResponse:
            if self.model_name not in sessions:
                path = repo / self.model_name / "1" / "model.onnx"
                if not path.exists():
                    return InferenceResponse([], TritonError(f"model {self.model_name} not found"))
                sessions[self.model_name] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            feeds = {t.name(): t.as_numpy() for t in self.inputs}
            calls.append((self.model_name, next(iter(feeds.values())).shape[0]))
            out = sessions[self.model_name].run(self.outputs, feeds)
            return InferenceResponse([Tensor(n, a) for n, a in zip(self.outputs, out, strict=True)])

    def by_name(holder, name: str) -> Tensor | None:
        tensors = holder.inputs if hasattr(holder, "inputs") else holder.output_tensors
        return next((t for t in tensors if t.name() == name), None)

    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor, module.TritonError, module.TritonModelException = Tensor, TritonError, TritonModelException
    module.InferenceResponse, module.InferenceRequest = InferenceResponse, InferenceRequest
    module.get_input_tensor_by_name = by_name
    module.get_output_tensor_by_name = by_name
    module.calls = calls
    sys.modules["triton_python_backend_utils"] = module
    return module
