"""TensorRT engines: built only with TensorRT and a GPU (gpu-marked), otherwise recorded as not built.

Without a GPU the builder's use of the TensorRT API is checked against a recording stand-in:
strongly typed network, one profile over the batch spec for every input, the timing cache carried
from graph to graph, the serialized plan written as is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from salkit.base.errors import SalkitError
from salkit.export.batch_profile import BatchProfile
from salkit.export.engines_trt import build_engine, engine_unavailable_reason
from salkit.runtime.bundle import load_bundle


def test_without_gpu_the_bundle_says_why_and_holds_no_engine(tiny_coop_bundle: Path) -> None:
    reason = engine_unavailable_reason()
    if not reason:
        pytest.skip("TensorRT and a GPU are present here")
    manifest = load_bundle(tiny_coop_bundle)
    assert manifest.engines["status"] == "not built" and manifest.engines["files"] == {}
    assert manifest.engines["reason"] in (reason, "--no-engine given")
    assert not list(tiny_coop_bundle.glob("*.plan"))


class _FakeTRT:
    """Records the calls the builder makes; mimics the TensorRT 10 Python API surface it uses."""

    def __init__(self, parse_ok: bool = True) -> None:
        self.log: list[tuple] = []
        self.parse_ok = parse_ok
        trt = self

        class Flag:
            STRONGLY_TYPED = 2

        class MemoryPoolType:
            WORKSPACE = "workspace"

        class Tensor:
            def __init__(self, name: str, shape: tuple) -> None:
                self.name, self.shape = name, shape

        class Network:
            num_inputs = 2

            def get_input(self, i: int) -> Tensor:
                return [Tensor("saliency", (-1, 1, 64, 64)), Tensor("image", (-1, 3, 64, 64))][i]

        class Parser:
            num_errors = 1

            def __init__(self, network, logger) -> None:
                pass

            def parse_from_file(self, path: str) -> bool:
                trt.log.append(("parse", Path(path).name))
                return trt.parse_ok

            def get_error(self, i: int) -> str:
                return "Bernoulli: no importer"

        class Cache:
            def __init__(self, data: bytes) -> None:
                self.data = data

            def serialize(self) -> bytes:
                return self.data + b"+"

        class Config:
            def set_memory_pool_limit(self, pool, size) -> None:
                trt.log.append(("workspace", pool, size))

            def create_timing_cache(self, data: bytes) -> Cache:
                trt.log.append(("cache_in", data))
                self.cache = Cache(data)
                return self.cache

            def set_timing_cache(self, cache, ignore_mismatch) -> None:
                trt.log.append(("set_cache", cache is self.cache, ignore_mismatch))

            def get_timing_cache(self) -> Cache:
                return self.cache

            def add_optimization_profile(self, profile) -> None:
                trt.log.append(("profile_added",))

        class Profile:
            def set_shape(self, name, lo, opt, hi) -> None:
                trt.log.append(("shape", name, lo, opt, hi))

        class Builder:
            def __init__(self, logger) -> None:
                pass

            def create_network(self, flags: int) -> Network:
                trt.log.append(("flags", flags))
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network, config) -> bytes:
                return b"PLAN"

        self.NetworkDefinitionCreationFlag, self.MemoryPoolType = Flag, MemoryPoolType
        self.Builder, self.OnnxParser = Builder, Parser


def test_engine_builder_uses_the_documented_api(tmp_path: Path) -> None:
    trt = _FakeTRT()
    onnx_path = tmp_path / "energy_grad.onnx"
    onnx_path.write_bytes(b"graph")
    cache = build_engine(trt, None, onnx_path, tmp_path / "energy_grad.plan", BatchProfile(2, 4, 8), b"old")
    assert (tmp_path / "energy_grad.plan").read_bytes() == b"PLAN"
    assert cache == b"old+"  # the updated cache goes on to the next graph
    assert ("flags", 1 << 2) in trt.log  # strongly typed: precision comes from the ONNX
    assert ("shape", "saliency", (2, 1, 64, 64), (4, 1, 64, 64), (8, 1, 64, 64)) in trt.log
    assert ("shape", "image", (2, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64)) in trt.log
    assert ("cache_in", b"old") in trt.log and ("set_cache", True, False) in trt.log


def test_engine_builder_reports_parser_errors(tmp_path: Path) -> None:
    onnx_path = tmp_path / "g.onnx"
    onnx_path.write_bytes(b"graph")
    with pytest.raises(SalkitError, match="g.onnx.*Bernoulli"):
        build_engine(_FakeTRT(parse_ok=False), None, onnx_path, tmp_path / "g.plan", BatchProfile(), b"")
    assert not (tmp_path / "g.plan").exists()


@pytest.mark.gpu
def test_engines_build_and_match_onnx_runtime(tmp_path: Path, untrained_coop_checkpoint: Path) -> None:
    import onnxruntime as ort
    import tensorrt as trt
    import torch

    from salkit.export.bundle_writer import ExportOptions, export_bundle

    out = tmp_path / "bundle"
    export_bundle(ExportOptions(ckpt=untrained_coop_checkpoint, out=out, batch=BatchProfile(1, 2, 4)))
    manifest = load_bundle(out)
    assert manifest.engines["status"] == "built" and set(manifest.engines["files"]) == set(manifest.graphs)
    assert (out / "timing.cache").stat().st_size > 0
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
        (out / manifest.engines["files"]["energy_grad"]["file"]).read_bytes())
    context = engine.create_execution_context()
    y, x = torch.randn(3, 1, 64, 64, device="cuda"), torch.randn(3, 3, 64, 64, device="cuda")
    grad = torch.empty_like(y)
    for name, tensor in (("saliency", y), ("image", x), ("grad", grad)):
        if name != "grad":
            context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.Stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    expected = ort.InferenceSession(str(manifest.graph_path("energy_grad")), providers=["CPUExecutionProvider"]).run(
        ["grad"], {"saliency": y.cpu().numpy(), "image": x.cpu().numpy()})[0]
    assert np.abs(grad.cpu().numpy() - expected).max() <= 1e-3 * np.abs(expected).max()
