"""The cooperative loop of the Triton loop model (``export-trt --triton-repo``).

Copied next to the loop model (``loop_model.py`` of this package) as ``salkit_loop.py``; it runs in Triton's
Python backend with numpy and the vendored ``salkit.kernels`` only. ``call(graph, inputs,
outputs)`` runs one graph model of the repository (BLS). Latents and noise follow
``kernels.coop.random_inputs``, sal-runtime's seed convention: same bundle, seed and inputs, same
answer as sal-runtime. Request parameters: samples, steps, noise, seed. With ``split_energy``
(a bundle with the split energy graphs whose chosen artefacts sal-runtime runs split too), the
image's share of the energy's first convolution is computed once (``energy_image``) and each step
calls ``energy_grad_step``, as sal-runtime does; otherwise ``energy_grad`` every step.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from salkit.kernels import coop

GraphCall = Callable[[str, dict, list], list]


def run(call: GraphCall, x: np.ndarray, params: dict, s: dict) -> dict:
    """IMAGE (B,3,S,S) → SALIENCY (B,1,S,S) and UNCERTAINTY (B,3,S,S): predictive, aleatoric, epistemic."""
    n = int(params.get("samples", s["samples"]))
    steps = int(params.get("steps", s["langevin_steps"]))
    b = x.shape[0]
    latents, noise = coop.random_inputs(params.get("seed"), samples=n, batch=b, latent_dim=s["latent_dim"], steps=steps,
                                        size=x.shape[2], noise=bool(params.get("noise", False)))
    feats = call("encoder", {"image": x}, s["feature_names"])  # once per image

    def sample_probs(h: np.ndarray) -> np.ndarray:
        # Features (B, ...) → (N, B, ...) → (N·B, ...): sample-major rows, the order of h (N, B, d) → (N·B, d).
        feeds = {name: np.broadcast_to(f, (n, *f.shape)).reshape(n * b, *f.shape[1:]) for name, f in zip(s["feature_names"], feats)}
        feeds["latent"] = h.reshape(n * b, -1)  # (N, B, d) → (N·B, d)
        (logits,) = call("latent_decoder", feeds, ["logits"])  # (N·B, 1, S, S)
        return coop.ARRAY_OPS.sigmoid(logits).reshape(n, b, *logits.shape[1:])  # (N·B, 1, S, S) → (N, B, 1, S, S)

    if s.get("split_energy"):
        # X's share of U's first convolution, constant over the steps: once per request (if any step runs).
        image_term = call("energy_image", {"image": x}, ["image_term"])[0] if steps else None

        def energy_grad(y: np.ndarray) -> np.ndarray:
            return call("energy_grad_step", {"saliency": y, "image_term": image_term}, ["grad"])[0]  # (B, 1, S, S)
    else:
        def energy_grad(y: np.ndarray) -> np.ndarray:
            return call("energy_grad", {"saliency": y, "image": x}, ["grad"])[0]  # (B, 1, S, S)

    out = coop.predict(sample_probs, latents, energy_grad, steps=steps, step_size=s["langevin_step"], noise=noise,
                       eps=s.get("logit_eps", coop.LOGIT_EPS))
    uncertainty = np.concatenate([out["predictive"], out["aleatoric"], out["epistemic"]], axis=1)  # 3 × (B,1,S,S) → (B,3,S,S)
    return {"SALIENCY": out["saliency"].astype(np.float32), "UNCERTAINTY": uncertainty.astype(np.float32)}
