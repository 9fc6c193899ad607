# Triton Python-backend model written by `export-trt --triton-repo`: the salkit loop over BLS calls.
#
# It serves the same interface as `sal-runtime serve` for FP32 input: IMAGE FP32 [B, 3, S, S]
# (resized and normalised with the bundle's mean/std) → coop: SALIENCY [B, 1, S, S] probabilities
# and UNCERTAINTY [B, 3, S, S] (predictive, aleatoric, epistemic entropy, nats); qefpn: SALIENCY,
# ITERATIONS [B], RESIDUAL [B]. Request parameters: samples, steps, noise, seed (coop); steps (qefpn).
# Each graph of the bundle is a model of this repository (name: <prefix><graph>), called with BLS.
# The algorithms are salkit.kernels' (cooperative predict: kernels/coop.py; the fixed-iteration
# Broyden solve: kernels/broyden.py), the same functions sal-runtime runs, from the copy of
# salkit.kernels that sits next to this file (numpy only): the Triton host needs numpy and
# nothing else of salkit. Latents and noise follow kernels.coop.random_inputs, sal-runtime's seed
# convention: numpy.random.default_rng(seed) draws float32 latents (N, B, d), then, when noise is
# on, the Langevin noise (K, B, 1, S, S). Same bundle, seed and inputs: same answer as sal-runtime.
# EXTRA_SYS_PATH (config.pbtxt parameter): see _salkit_prelude.py (export/triton_prelude.py).
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _salkit_prelude.py sits next to this file
from _salkit_prelude import extend_sys_path, model_config  # noqa: E402

extend_sys_path(__file__)

import json  # noqa: E402

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from salkit.kernels import coop  # noqa: E402
from salkit.kernels.broyden import solve_fixed  # noqa: E402


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config, params = model_config(args)
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
        b = x.shape[0]
        latents, noise = coop.random_inputs(params.get("seed"), samples=n, batch=b, latent_dim=s["latent_dim"], steps=steps,
                                            size=x.shape[2], noise=bool(params.get("noise", False)))
        feats = self._call("encoder", {"image": x}, s["feature_names"])  # once per image

        def sample_probs(h: np.ndarray) -> np.ndarray:
            # Features (B, ...) → (N, B, ...) → (N·B, ...): sample-major rows, the order of h (N, B, d) → (N·B, d).
            feeds = {name: np.broadcast_to(f, (n, *f.shape)).reshape(n * b, *f.shape[1:]) for name, f in zip(s["feature_names"], feats)}
            feeds["latent"] = h.reshape(n * b, -1)  # (N, B, d) → (N·B, d)
            (logits,) = self._call("latent_decoder", feeds, ["logits"])  # (N·B, 1, S, S)
            return coop.ARRAY_OPS.sigmoid(logits).reshape(n, b, *logits.shape[1:])  # (N·B, 1, S, S) → (N, B, 1, S, S)

        def energy_grad(y: np.ndarray) -> np.ndarray:
            return self._call("energy_grad", {"saliency": y, "image": x}, ["grad"])[0]  # (B, 1, S, S)

        out = coop.predict(sample_probs, latents, energy_grad, steps=steps, step_size=s["langevin_step"], noise=noise,
                           eps=s.get("logit_eps", coop.LOGIT_EPS))
        uncertainty = np.concatenate([out["predictive"], out["aleatoric"], out["epistemic"]], axis=1)  # 3 × (B,1,S,S) → (B,3,S,S)
        return {"SALIENCY": out["saliency"].astype(np.float32), "UNCERTAINTY": uncertainty.astype(np.float32)}

    def _qefpn(self, x: np.ndarray, params: dict) -> dict:
        s = self.settings
        iterations = int(params.get("steps", s["broyden_iterations"]))
        (injection,) = self._call("encoder", {"image": x}, ["injection"])

        def f(z: np.ndarray) -> np.ndarray:
            return self._call("f", {"z": z, "injection": injection}, ["f_z"])[0]

        z, stats = solve_fixed(f, np.zeros(injection.shape, np.float32), iterations, tol=s["broyden_tol"],
                               memory=s["broyden_memory"], stop_mode=s["stop_mode"])
        (logits,) = self._call("decoder", {"z": z}, ["logits"])
        return {"SALIENCY": coop.ARRAY_OPS.sigmoid(logits).astype(np.float32),
                "ITERATIONS": np.asarray(stats["iterations"], np.float32), "RESIDUAL": np.asarray(stats["residual"], np.float32)}
