# Triton Python-backend model written by `export-trt --triton-repo DIR --triton-graph-backend python`:
# one bundle graph (1/model.onnx next to this file) run with ONNX Runtime on the CPU, for Triton
# builds that carry only the Python backend (e.g. the server inside the nvidia-pytriton wheel).
# Inputs and outputs are the graph's own, as declared in config.pbtxt (batch axis first).
# Requests that dynamic batching hands over together run as one ONNX Runtime call.
# Parameters (config.pbtxt): EXTRA_SYS_PATH — directories (os.pathsep-separated) holding numpy and
# onnxruntime; the Python stub ignores PYTHONPATH, and numpy must import before initialize() runs.
# ORT_THREADS — intra-op threads per instance (0 = ONNX Runtime's default).
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _salkit_prelude.py sits next to this file
from _salkit_prelude import extend_sys_path, model_config

extend_sys_path(__file__)

import numpy as np  # noqa: E402 — after extend_sys_path, which makes the vendored salkit modules importable
import triton_python_backend_utils as pb_utils  # noqa: E402 — after extend_sys_path, which makes the vendored salkit modules importable


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import onnxruntime as ort

        config, params = model_config(args)
        self.inputs = [spec["name"] for spec in config["input"]]
        self.outputs = [spec["name"] for spec in config["output"]]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("ORT_THREADS", "0") or 0)
        path = Path(__file__).resolve().parent / "model.onnx"
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests: list) -> list:
        try:
            feeds = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs} for r in requests]
            sizes = [f[self.inputs[0]].shape[0] for f in feeds]
            # Requests stacked along the batch axis: (sum of B_i, ...) → one session run.
            merged = {name: np.concatenate([f[name] for f in feeds]) for name in self.inputs}
            results = self.session.run(self.outputs, merged)
        except Exception as err:
            return [pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(err))) for _ in requests]
        responses, start = [], 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value[start:start + size]))
                       for name, value in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
