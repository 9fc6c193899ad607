"""Model configuration in Triton's schema (``GET /v2/models/{m}/config``, gRPC ModelConfig).

The interface part — inputs, outputs and the request parameters — is written from the one
description of each served model (salkit.runtime.server.interface), which the server's metadata
is written from too; the Triton model repository that ``export-trt --triton-repo`` writes renders
the same dicts as ``config.pbtxt`` (salkit.export.triton_repo), so a client built from either
config works on both servers.

Triton's config gives every input one datatype. The configs describe the layout both servers
take: ``IMAGE`` FP32 ``[3, S, S]`` after the implicit batch axis (resized and normalised with the
bundle's mean/std), maps at S × S. ``sal-runtime serve`` also takes ``IMAGE`` as UINT8
``[B, H, W, 3]`` RGB pixels (maps then come back at H × W); its model metadata lists that layout.

Parameters (``string_value`` entries): ``salkit_settings`` — the bundle's loop settings as JSON
(coop: latent_dim, langevin_step, langevin_steps, samples; QE-FPN: broyden_iterations,
broyden_memory, broyden_tol, stop_mode); ``salkit_request_parameters`` — JSON name → datatype of
the request parameters the model reads. ``sal-runtime serve`` adds ``salkit_backend`` (the runtime
backend it runs on); the Triton repository adds to ``salkit_settings`` the wiring of its loop
model (``prefix``, ``feature_names``). The dicts follow Triton's JSON form (numbers for int64),
so ``google.protobuf.json_format.ParseDict`` turns them into ``model_config_pb2.ModelConfig``.
"""

from __future__ import annotations

import json
from typing import Any

from salkit.runtime.bundle import Manifest
from salkit.runtime.kinds import get_kind
from salkit.runtime.server.interface import interface_of


def tensor_configs(model_name: str, size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Triton ``input`` and ``output`` entries of a model for a bundle of input size ``size``."""
    return interface_of(model_name).config_tensors(size)


def model_settings(manifest: Manifest) -> dict[str, Any]:
    """The bundle's loop settings the models run with (JSON-ready)."""
    return {"kind": manifest.model_kind, **get_kind(manifest.model_kind).config_settings(manifest)}


def shared_parameters(model_name: str, settings: dict[str, Any]) -> dict[str, str]:
    """The ``parameters`` both configs carry, as name → string value."""
    return {
        "salkit_settings": json.dumps(settings, sort_keys=True),
        "salkit_request_parameters": json.dumps(interface_of(model_name).request_parameters(), sort_keys=True),
    }


def model_config(
    model_name: str,
    manifest: Manifest,
    *,
    backend_name: str,
    gpu: bool,
    max_batch_size: int,
    max_delay_ms: float,
    max_queue: int,
) -> dict[str, Any]:
    """What ``sal-runtime serve`` reports for one of its models (Triton's JSON form)."""
    inputs, outputs = tensor_configs(model_name, manifest.input_size)
    parameters = {**shared_parameters(model_name, model_settings(manifest)), "salkit_backend": backend_name}
    return {
        "name": model_name,
        "platform": f"salkit_{manifest.model_kind}",
        "backend": "salkit",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": max_batch_size,
        "input": inputs,
        "output": outputs,
        "dynamic_batching": {
            "max_queue_delay_microseconds": round(max_delay_ms * 1000),
            "default_queue_policy": {"max_queue_size": max_queue},  # rows, the batcher's unit
        },
        "instance_group": [{"name": model_name, "kind": "KIND_GPU" if gpu else "KIND_CPU", "count": 1}],
        "parameters": {key: {"string_value": value} for key, value in parameters.items()},
    }
