"""The openvino backend against ort-cpu fp32: the runner contract, whole predictions, int8 graphs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openvino")

from salkit.runtime.backends import availability, create_runner
from salkit.runtime.bundle import load_bundle
from salkit.runtime.predictor import Predictor
from tests.runtime.toy_bundles import LATENT, SIZE
from tests.runtime.toy_precision import passed, quantize_int8, with_precision_records


def _feeds(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "saliency": rng.standard_normal((batch, 1, SIZE, SIZE), dtype=np.float32),
        "image": rng.standard_normal((batch, 3, SIZE, SIZE), dtype=np.float32),
    }


def _images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, SIZE, SIZE), dtype=np.float32)


def test_openvino_is_available_here() -> None:
    assert availability()["openvino"] == ""


def test_runner_describes_and_matches_ort(toy_coop) -> None:
    with create_runner("openvino", toy_coop.manifest, "energy_grad", threads=1) as ov, \
            create_runner("ort-cpu", toy_coop.manifest, "energy_grad", threads=1) as ort:
        assert ov.describe() == ort.describe()
        feeds = _feeds(3)
        got, want = ov.infer(feeds)["grad"], ort.infer(feeds)["grad"]
        assert np.abs(got - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max()))


def test_bound_run_reads_and_writes_the_loop_buffers(toy_coop) -> None:
    with create_runner("openvino", toy_coop.manifest, "energy_grad", threads=1) as runner:
        feeds = _feeds(2)
        ins, outs = runner.allocate({k: v.shape for k, v in feeds.items()})
        binding = runner.bind(ins, outs)
        target = outs["grad"]
        for key, value in feeds.items():
            ins[key][...] = value
        runner.run(binding)
        assert outs["grad"] is target and np.abs(target - runner.infer(feeds)["grad"]).max() == 0.0
        ins["saliency"][...] = 0.0  # new values in the same buffer reach the next run: nothing was copied at bind
        runner.run(binding)
        zeros = {**feeds, "saliency": np.zeros_like(feeds["saliency"])}
        assert np.abs(target - runner.infer(zeros)["grad"]).max() == 0.0
        assert np.abs(target - runner.infer(feeds)["grad"]).max() > 0.0


def test_compile_options_follow_threads_and_precision(toy_coop) -> None:
    with create_runner("openvino", toy_coop.manifest, "energy_grad", threads=1, precision="bf16") as runner:
        assert runner.config()["INFERENCE_PRECISION_HINT"] == "bf16"
        compiled = runner.compiled({"saliency": (1, 1, SIZE, SIZE), "image": (1, 3, SIZE, SIZE)})
        assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
        assert str(compiled.get_property("PERFORMANCE_HINT")).upper().endswith("LATENCY")
    with create_runner("openvino", toy_coop.manifest, "energy_grad") as runner:
        assert runner.config()["INFERENCE_PRECISION_HINT"] == "f32"
        compiled = runner.compiled({"saliency": (1, 1, SIZE, SIZE), "image": (1, 3, SIZE, SIZE)})
        assert "32" in str(compiled.get_property("INFERENCE_PRECISION_HINT"))


@pytest.mark.parametrize("path", ["split", "whole"])
def test_coop_predict_equals_ort_cpu(toy_coop, path) -> None:
    x = _images(3)
    latents = np.random.default_rng(1).standard_normal((4, 3, LATENT), dtype=np.float32)
    noise = np.random.default_rng(2).standard_normal((3, 3, 1, SIZE, SIZE), dtype=np.float32)
    with Predictor.from_bundle(toy_coop.path, backend="ort-cpu", precision="fp32", threads=1) as ref, \
            Predictor.from_bundle(toy_coop.path, backend="openvino", precision="fp32", threads=1) as ov:
        assert ov.plan == "openvino:fp32"
        want = ref.predict_tensor(x, latents=latents, noise_values=noise, path=path)
        got = ov.predict_tensor(x, latents=latents, noise_values=noise, path=path)
        for key in want:
            assert np.abs(got[key] - want[key]).max() <= 1e-5, key
        for batch in (1, 2):  # another batch shape compiles its own models
            one = ov.predict_tensor(x[:batch], latents=latents[:, :batch], path=path)["saliency"]
            assert np.abs(one - ref.predict_tensor(x[:batch], latents=latents[:, :batch], path=path)["saliency"]).max() <= 1e-5
        maps = want["saliency"]
        assert np.abs(ov.refine_tensor(x, maps) - ref.refine_tensor(x, maps)).max() <= 1e-5


def test_qefpn_predict_equals_ort_cpu(toy_qefpn) -> None:
    x = _images(2, seed=3)
    with Predictor.from_bundle(toy_qefpn.path, backend="ort-cpu", precision="fp32", threads=1) as ref, \
            Predictor.from_bundle(toy_qefpn.path, backend="openvino", precision="fp32", threads=1) as ov:
        want, got = ref.predict_tensor(x), ov.predict_tensor(x)
        assert np.abs(got["saliency"] - want["saliency"]).max() <= 1e-5
        assert np.array_equal(got["iterations"], want["iterations"])


@pytest.fixture(scope="module")
def toy_coop_int8(toy_coop, tmp_path_factory):
    work = tmp_path_factory.mktemp("int8")
    encoder, decoder = work / "encoder.onnx", work / "latent_decoder.onnx"
    images = [_images(4, seed=100 + i) for i in range(4)]
    quantize_int8(toy_coop.path / "encoder.onnx", encoder, [{"image": x} for x in images])
    with create_runner("ort-cpu", toy_coop.manifest, "encoder", threads=1) as runner:
        feats = [runner.infer({"image": x}) for x in images]
    rng = np.random.default_rng(0)
    quantize_int8(toy_coop.path / "latent_decoder.onnx", decoder,
                  [{**f, "latent": rng.standard_normal((4, LATENT), dtype=np.float32)} for f in feats])
    gate = {"ort-cpu:int8": passed(), "openvino:int8": passed()}
    return with_precision_records(toy_coop.path, work / "bundle", variant_files={"int8": {"encoder": encoder, "latent_decoder": decoder}},
                                  gate=gate, choice="ort-cpu:int8")


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino"])
def test_int8_graphs_run_on_both_backends(toy_coop_int8, backend, simulated_cpu) -> None:
    """The int8 plan reads the QDQ files (its maps differ from fp32) and stays close to fp32."""
    simulated_cpu("avx2")  # a CPU with an int8 path, else a forced int8 plan runs at fp32
    x = _images(2, seed=4)
    latents = np.random.default_rng(5).standard_normal((4, 2, LATENT), dtype=np.float32)
    with Predictor.from_bundle(toy_coop_int8, backend="ort-cpu", precision="fp32", threads=1) as ref, \
            Predictor.from_bundle(toy_coop_int8, backend=backend, precision="int8", threads=1) as low:
        assert low.plan == f"{backend}:int8"
        assert low._runners["encoder"].path.name == "encoder.int8.onnx"
        assert low._runners["energy_grad"].path.name == "energy_grad.onnx"  # no int8 variant: the fp32 graph
        want = ref.predict_tensor(x, latents=latents)["saliency"]
        got = low.predict_tensor(x, latents=latents)["saliency"]
    delta = np.abs(got - want)
    # Near, not gated (the export's gate judges real models): this toy measured max 0.09, mean 0.02.
    assert 0.0 < delta.max() <= 0.25 and delta.mean() <= 0.05


def test_int8_plans_agree_across_backends(toy_coop_int8, simulated_cpu) -> None:
    simulated_cpu("avx2")
    x = _images(2, seed=6)
    latents = np.random.default_rng(7).standard_normal((4, 2, LATENT), dtype=np.float32)
    with Predictor.from_bundle(toy_coop_int8, backend="ort-cpu", precision="int8", threads=1) as a, \
            Predictor.from_bundle(toy_coop_int8, backend="openvino", precision="int8", threads=1) as b:
        delta = np.abs(a.predict_tensor(x, latents=latents)["saliency"] - b.predict_tensor(x, latents=latents)["saliency"])
    assert delta.max() <= 0.1 and delta.mean() <= 0.01  # measured: max 0.04, mean 0.004 (int8 rounding differs)


def test_variant_hashes_are_checked(toy_coop_int8, tmp_path, simulated_cpu) -> None:
    import shutil

    simulated_cpu("avx2")

    from salkit.base.errors import SalkitError

    copy = tmp_path / "b"
    shutil.copytree(toy_coop_int8, copy)
    with open(copy / "encoder.int8.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(SalkitError, match=r"encoder\.int8\.onnx has SHA-256"):  # the bundle loader checks first
        load_bundle(copy)
    with pytest.raises(SalkitError, match=r"int8 graph 'encoder'.*encoder\.int8\.onnx has SHA-256"):  # and the runner
        Predictor(load_bundle(copy, verify_hashes=False), backend="openvino", precision="int8", threads=1)
    (copy / "encoder.int8.onnx").unlink()
    with pytest.raises(SalkitError, match=r"graph 'encoder' file encoder\.int8\.onnx is missing"):
        Predictor(load_bundle(copy, verify_hashes=False), backend="ort-cpu", precision="int8", threads=1)
