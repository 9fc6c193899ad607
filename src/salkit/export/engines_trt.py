"""TensorRT engines from the bundle's ONNX graphs (TensorRT 10 / 11 Python API, imported lazily).

One engine per graph, one optimisation profile over ``--batch`` (only the batch axis is dynamic),
one timing cache shared by all graphs of the bundle (kept as ``timing.cache`` so a re-export on
the same GPU is faster). Networks are strongly typed: TensorRT 11 always is, 10.12+ opts in with
the STRONGLY_TYPED flag, so reduced precision comes from the ONNX itself (fp16 tensors, Q/DQ
nodes), never from builder precision flags. Without TensorRT or a CUDA device nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from salkit.base.errors import SalkitError
from salkit.export.batch_profile import BatchProfile
from salkit.runtime.bundle import Manifest, sha256_file

TIMING_CACHE = "timing.cache"
WORKSPACE_BYTES = 2 << 30


def engine_unavailable_reason() -> str:
    """'' when engines can be built here, else one line saying why not."""
    try:
        import tensorrt  # noqa: F401 — imported only to see whether TensorRT is installed
    except ImportError:
        return "tensorrt is not installed (pip install 'salkit[trt]')"
    except Exception as err:
        return f"tensorrt failed to import ({type(err).__name__}: {err})"
    try:
        import torch

        if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
            return "no CUDA device"
    except Exception as err:
        return f"CUDA is unusable ({type(err).__name__}: {err})"
    return ""


def _network_flags(trt: Any) -> int:
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # deprecated (always on) in 11, opt-in in 10.12+
        flags |= 1 << int(strongly_typed)
    return flags


def build_engine(trt: Any, logger: Any, onnx_path: Path, plan_path: Path, batch: BatchProfile,
                 timing_cache: bytes) -> bytes:
    """Build and write one engine; returns the updated timing cache."""
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SalkitError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, False)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]  # (-1, C, H, W): only the batch axis is dynamic
        profile.set_shape(tensor.name, (batch.min, *rest), (batch.opt, *rest), (batch.max, *rest))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SalkitError(f"TensorRT failed to build an engine from {onnx_path.name} (see the log above)")
    from salkit.base.atomic import atomic_write_bytes

    atomic_write_bytes(plan_path, bytes(serialized))
    return bytes(config.get_timing_cache().serialize())


def build_engines(manifest: Manifest, directory: Path, batch: BatchProfile,
                  progress: Callable[[str], None]) -> dict[str, dict[str, str]]:
    """One ``<graph>.plan`` per graph in ``directory``; returns the manifest's engine file table."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    cache_path = directory / TIMING_CACHE
    cache = cache_path.read_bytes() if cache_path.exists() else b""
    files: dict[str, dict[str, str]] = {}
    for name, graph in manifest.graphs.items():
        progress(f"building engine {name}")
        plan = directory / f"{name}.plan"
        cache = build_engine(trt, logger, directory / graph.file, plan, batch, cache)
        files[name] = {"file": plan.name, "sha256": sha256_file(plan), "tensorrt": trt.__version__}
    cache_path.write_bytes(cache)
    return files
