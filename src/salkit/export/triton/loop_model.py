# Triton Python-backend model written by `export-trt --triton-repo`: the salkit loop over BLS calls.
#
# It serves the same interface as `sal-runtime serve` for FP32 input: IMAGE FP32 [B, 3, S, S]
# (resized and normalised with the bundle's mean/std) → the outputs of the kind's entry model
# (coop: SALIENCY [B, 1, S, S] probabilities and UNCERTAINTY [B, 3, S, S]; qefpn: SALIENCY,
# ITERATIONS [B], RESIDUAL [B]). Each graph of the bundle is a model of this repository (name:
# <prefix><graph>), called with BLS. The loop is the kind's (salkit/export/triton/loop_<kind>.py),
# copied next to this file as salkit_loop.py: run(call, x, params, settings) → outputs. It uses
# the algorithms of salkit.kernels, the same functions sal-runtime runs, from the copy of
# salkit.kernels that sits next to this file (numpy only): the Triton host needs numpy and
# nothing else of salkit. Same bundle, seed and inputs: same answer as sal-runtime.
# EXTRA_SYS_PATH (config.pbtxt parameter): see _salkit_prelude.py (export/triton/prelude.py).
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _salkit_prelude.py sits next to this file
from _salkit_prelude import extend_sys_path, model_config

extend_sys_path(__file__)

import importlib.util  # noqa: E402 — after extend_sys_path, which makes the vendored salkit modules importable
import json  # noqa: E402 — after extend_sys_path, which makes the vendored salkit modules importable

import numpy as np  # noqa: E402 — after extend_sys_path, which makes the vendored salkit modules importable
import triton_python_backend_utils as pb_utils  # noqa: E402 — after extend_sys_path, which makes the vendored salkit modules importable


def _load_loop():
    """The kind's loop module next to this file (loaded by path: every loop model has its own)."""
    spec = importlib.util.spec_from_file_location("salkit_loop", Path(__file__).resolve().parent / "salkit_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config, params = model_config(args)
        self.settings = json.loads(params["salkit_settings"])
        self.prefix = self.settings["prefix"]
        self.loop = _load_loop()

    def _call(self, graph: str, inputs: dict, outputs: list) -> list:
        request = pb_utils.InferenceRequest(
            model_name=self.prefix + graph,
            requested_output_names=list(outputs),
            inputs=[pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=np.float32)) for name, value in inputs.items()],
        )
        response = request.exec()
        if response.has_error():
            raise pb_utils.TritonModelException(f"{self.prefix}{graph}: {response.error().message()}")
        return [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs]

    @staticmethod
    def _params(request) -> dict:
        raw = request.parameters() if hasattr(request, "parameters") else "{}"
        return json.loads(raw or "{}")

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                x = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().astype(np.float32)
                params = self._params(request)
                outputs = self.loop.run(self._call, x, params, self.settings)
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in outputs.items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as err:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(err))))
        return responses
