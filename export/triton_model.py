# Triton Python-backend model written by `export-trt --triton-repo`: the salkit loop over BLS calls.
#
# It serves the same interface as `sal-runtime serve` for FP32 input: IMAGE FP32 [B, 3, S, S]
# (resized and normalised with the bundle's mean/std) → coop: SALIENCY [B, 1, S, S] probabilities
# and UNCERTAINTY [B, 3, S, S] (predictive, aleatoric, epistemic entropy, nats); qefpn: SALIENCY,
# ITERATIONS [B], RESIDUAL [B]. Request parameters: samples, steps, noise, seed (coop); steps (qefpn).
# Each graph of the bundle is a model of this repository (name: <prefix><graph>), called with BLS.
# Latents and noise: numpy.random.default_rng(seed) draws latents (N, B, d) first, then per
# Langevin step one standard normal (N·B, 1, S, S) when noise is on.
# The numerical kernels (Langevin step, entropy, Broyden) come from the salkit.kernels copy that
# sits next to this file (numpy only), so the Triton host needs numpy and nothing of salkit.
# EXTRA_SYS_PATH (config.pbtxt parameter, os.pathsep-separated) names directories put on sys.path
# before numpy is imported: the Python stub ignores PYTHONPATH.
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

_EXTRA_PATH = re.compile(r'key:\s*"EXTRA_SYS_PATH"\s*value:\s*\{\s*string_value:\s*"([^"]*)"')


def _extend_sys_path() -> None:
    config = Path(__file__).resolve().parents[1] / "config.pbtxt"
    match = _EXTRA_PATH.search(config.read_text()) if config.exists() else None
    for entry in reversed(match.group(1).split(os.pathsep) if match else []):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)


_extend_sys_path()

import json  # noqa: E402

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from salkit.kernels.broyden import broyden  # noqa: E402
from salkit.kernels.entropy import uncertainty_maps  # noqa: E402
from salkit.kernels.langevin import langevin_step  # noqa: E402


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.settings = json.loads(params["salkit_settings"])
        self.kind = self.settings["kind"]
        self.prefix = self.settings["prefix"]

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
                outputs = self._coop(x, params) if self.kind == "coop" else self._qefpn(x, params)
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in outputs.items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as err:  # noqa: BLE001 - reported to the client as this request's error
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(err))))
        return responses

    def _coop(self, x: np.ndarray, params: dict) -> dict:
        s = self.settings
        n = int(params.get("samples", s["samples"]))
        steps = int(params.get("steps", s["langevin_steps"]))
        noise = bool(params.get("noise", False))
        rng = np.random.default_rng(params.get("seed"))
        b = x.shape[0]
        feats = self._call("encoder", {"image": x}, s["feature_names"])
        latents = rng.standard_normal((n, b, s["latent_dim"])).astype(np.float32)
        # One encoder pass for all samples: features (B, ...) repeated sample-major → (N·B, ...).
        feeds = {name: np.broadcast_to(f, (n, *f.shape)).reshape(n * b, *f.shape[1:]) for name, f in zip(s["feature_names"], feats)}
        feeds["latent"] = latents.reshape(n * b, -1)
        (y,) = self._call("latent_decoder", feeds, ["logits"])  # (N·B, 1, S, S)
        x_rep = np.broadcast_to(x, (n, *x.shape)).reshape(n * b, *x.shape[1:])
        for _ in range(steps):
            (grad,) = self._call("energy_grad", {"saliency": y, "image": x_rep}, ["grad"])
            kick = rng.standard_normal(y.shape).astype(np.float32) if noise else None
            y = langevin_step(y, grad, s["langevin_step"], kick).astype(np.float32)
        probs = _sigmoid(y).reshape(n, b, *y.shape[1:])  # (N·B,1,S,S) → (N,B,1,S,S)
        maps = uncertainty_maps(probs)
        uncertainty = np.concatenate([maps["predictive"], maps["aleatoric"], maps["epistemic"]], axis=1)
        return {"SALIENCY": probs.mean(axis=0).astype(np.float32), "UNCERTAINTY": uncertainty.astype(np.float32)}

    def _qefpn(self, x: np.ndarray, params: dict) -> dict:
        s = self.settings
        iterations = int(params.get("steps", s["broyden_iterations"]))
        (injection,) = self._call("encoder", {"image": x}, ["injection"])

        def f(z: np.ndarray) -> np.ndarray:
            return self._call("f", {"z": z, "injection": injection}, ["f_z"])[0].astype(np.float64)

        z, stats = broyden(f, np.zeros(injection.shape, np.float64), max_iter=iterations, tol=s["broyden_tol"],
                           memory=s["broyden_memory"], stop_mode=s["stop_mode"])
        (logits,) = self._call("decoder", {"z": z}, ["logits"])
        residual = np.asarray(stats.get("residual", np.zeros(x.shape[0])), np.float32).reshape(-1)
        count = np.asarray(stats.get("iterations", np.full(x.shape[0], iterations)), np.float32).reshape(-1)
        if residual.size == 1:
            residual = np.full(x.shape[0], residual[0], np.float32)
        if count.size == 1:
            count = np.full(x.shape[0], count[0], np.float32)
        return {"SALIENCY": _sigmoid(logits).astype(np.float32), "ITERATIONS": count, "RESIDUAL": residual}
