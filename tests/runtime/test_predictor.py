"""The Python API: every accepted input kind, original sizes back, bad input refused, bundle
checks, determinism and concurrent callers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from salkit.base.errors import SalkitError
from salkit.base.images import preprocess, resize_map
from salkit.runtime import Prediction, Predictor
from salkit.runtime.inputs import to_batch

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def predictor(toy_coop):
    with Predictor.from_bundle(toy_coop.path, backend="ort-cpu", threads=1) as p:
        yield p


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_predict_equals_tensor_level_resized_back(predictor, toy_coop) -> None:
    images = [_rgb(40, 50, 1), _rgb(32, 32, 2), _rgb(17, 90, 3)]
    result = predictor.predict(images, seed=7)
    assert isinstance(result, Prediction)
    m = toy_coop.manifest
    tensor = predictor.predict_tensor(preprocess(images, 32, m.mean, m.std), seed=7)
    for i, img in enumerate(images):
        assert result.saliency[i].shape == img.shape[:2] and result.saliency[i].dtype == np.float32
        assert np.abs(result.saliency[i] - resize_map(tensor["saliency"][i, 0], img.shape[:2])).max() <= 1e-6
        assert 0.0 <= result.saliency[i].min() and result.saliency[i].max() <= 1.0
        for key in ("predictive", "aleatoric", "epistemic"):
            assert result.uncertainty[key][i].shape == img.shape[:2]
    assert predictor.predict(images, uncertainty=False, seed=7).uncertainty is None


def test_every_image_mode_and_input_kind(predictor, tmp_path) -> None:
    rgb = _rgb(24, 36, 4)
    gray = rgb[:, :, 0]
    modes = {
        "RGB": Image.fromarray(rgb),
        "L": Image.fromarray(gray),
        "RGBA": Image.fromarray(np.dstack([rgb, np.full(gray.shape, 128, np.uint8)])),
        "P": Image.fromarray(rgb).convert("P"),
        "I;16": Image.fromarray((gray.astype(np.uint16) * 257)),
        "1": Image.fromarray(gray > 128),
    }
    path = tmp_path / "photo.png"
    modes["RGB"].save(path)
    inputs = [*modes.values(), gray, gray[:, :, None], np.dstack([rgb, gray]), str(path), path]
    result = predictor.predict(inputs, seed=0)
    assert [s.shape for s in result.saliency] == [(24, 36)] * len(inputs)
    rows = to_batch(inputs, 32, predictor.manifest.mean, predictor.manifest.std).x
    for i in (2, 8, 9, 10):  # RGBA (PIL and array) drops alpha; paths decode to the same pixels
        assert np.array_equal(rows[i], rows[0]), i
    for i in (4, 6, 7):  # "I;16" (scaled by 65535), gray arrays (H, W) and (H, W, 1) equal mode "L"
        assert np.array_equal(rows[i], rows[1]), i
    assert np.abs(rows[3] - rows[0]).mean() < 0.2  # a palette image is the quantised picture


def test_float_batches_and_dlpack_tensors(predictor, toy_coop) -> None:
    m = toy_coop.manifest
    x = preprocess([_rgb(32, 32, 5), _rgb(32, 32, 6)], 32, m.mean, m.std)
    from_numpy = predictor.predict(x, seed=3)
    from_torch = predictor.predict(torch.from_numpy(x.copy()), seed=3)
    single = predictor.predict([x[0], x[1]], seed=3)  # (3, H, W) items
    for a, b, c in zip(from_numpy.saliency, from_torch.saliency, single.saliency, strict=True):
        assert a.shape == (32, 32)
        assert np.array_equal(a, b) and np.array_equal(a, c)
    tensor = predictor.predict_tensor(torch.from_numpy(x.copy()), seed=3)
    assert np.array_equal(tensor["saliency"][0, 0], from_numpy.saliency[0])
    big = np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)  # (2, 3, 64, 64): resized, maps come back 64×64
    assert predictor.predict(big, seed=3).saliency[0].shape == (64, 64)


def test_seeds_make_predictions_reproducible(predictor) -> None:
    x = np.random.default_rng(8).standard_normal((2, 3, 32, 32), dtype=np.float32)
    a = predictor.predict_tensor(x, seed=11)
    b = predictor.predict_tensor(x, seed=11)
    c = predictor.predict_tensor(x, seed=12)
    assert np.array_equal(a["saliency"], b["saliency"])
    assert np.abs(a["saliency"] - c["saliency"]).max() > 1e-4
    noisy = predictor.predict_tensor(x, seed=11, noise=True)
    assert np.abs(noisy["saliency"] - a["saliency"]).max() > 1e-4


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.full((1, 3, 32, 32), np.nan, np.float32), ["NaN"]),
        (np.zeros((1, 3, 32, 32), np.int32), ["dtype int32"]),
        (np.zeros((2, 32, 32, 3), np.float32), ["(B, 3, H, W)"]),
        (np.zeros((0, 3, 32, 32), np.float32), ["empty batch"]),
        ([], ["no images"]),
        (np.zeros((0, 4, 3), np.uint8), ["empty"]),
        (np.zeros((5, 4, 2), np.uint8), ["(H, W, 3)", "(5, 4, 2)"]),
        ("nope.png", ["does not exist"]),
        (3.5, ["float"]),
    ],
)
def test_bad_inputs_are_user_errors(predictor, bad, words) -> None:
    with pytest.raises(SalkitError) as err:
        predictor.predict(bad)
    for word in words:
        assert word in str(err.value)


def test_corrupt_image_file_is_a_user_error(predictor, tmp_path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(_rgb(20, 20)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(SalkitError, match="truncated.png"):
        predictor.predict([good, truncated])


def test_tensor_level_checks(predictor) -> None:
    x = np.zeros((1, 3, 32, 32), np.float32)
    for bad, word in [(x.astype(np.float64), "float32"), (x[:, :, :16], "shape"), (x[0], "shape"), (x[:0], "empty")]:
        with pytest.raises(SalkitError, match=word):
            predictor.predict_tensor(bad)
    with pytest.raises(SalkitError, match="samples"):
        predictor.predict_tensor(x, samples=0)
    with pytest.raises(SalkitError, match="steps"):
        predictor.predict_tensor(x, steps=-1)
    with pytest.raises(SalkitError, match="maps"):
        predictor.refine_tensor(x, np.full((1, 1, 32, 32), 1.5, np.float32))
    with pytest.raises(SalkitError, match="latents"):
        predictor.predict_tensor(x, latents=np.zeros((2, 1, 5), np.float32))


def test_refine_images_and_maps(predictor) -> None:
    images = [_rgb(30, 40, 9), _rgb(32, 32, 10)]
    maps = [np.random.default_rng(0).uniform(0, 1, (30, 40)).astype(np.float32), np.full((32, 32), 200, np.uint8)]
    refined = predictor.refine(images, maps, steps=3)
    assert [r.shape for r in refined] == [(30, 40), (32, 32)]
    assert all(0 <= r.min() and r.max() <= 1 for r in refined)
    unchanged = predictor.refine(images, maps, steps=0)
    assert np.abs(unchanged[1] - 200 / 255).max() < 1e-4  # K = 0 returns the map (through logit and back)
    assert np.abs(refined[1] - unchanged[1]).max() > 1e-3
    with pytest.raises(SalkitError, match="2 images but 1 maps"):
        predictor.refine(images, maps[:1])


def test_concurrent_callers_get_their_own_answers(predictor) -> None:
    rng = np.random.default_rng(12)
    batches = [rng.standard_normal((1 + i % 3, 3, 32, 32), dtype=np.float32) for i in range(8)]
    serial = [predictor.predict_tensor(x, seed=i)["saliency"] for i, x in enumerate(batches)]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                out = predictor.predict_tensor(batches[i], seed=i)["saliency"]
                assert np.array_equal(out, serial[i])
            results[i] = out
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(results) == list(range(8))


def test_qefpn_bundle_reports_solver_stats(toy_qefpn) -> None:
    with Predictor.from_bundle(toy_qefpn.path, backend="ort-cpu", threads=1) as p:
        result = p.predict([_rgb(20, 30), _rgb(32, 32, 1)])
        assert [s.shape for s in result.saliency] == [(20, 30), (32, 32)]
        assert result.uncertainty is None
        assert len(result.stats["iterations"]) == 2 and all(r < 1e-3 for r in result.stats["residual"])
        with pytest.raises(SalkitError, match="coop"):
            p.refine([_rgb(8, 8)], [np.zeros((8, 8), np.float32)])


def test_closed_predictor_refuses_work(toy_coop) -> None:
    p = Predictor.from_bundle(toy_coop.path, backend="ort-cpu", threads=1)
    with p:
        p.predict_tensor(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(SalkitError, match="closed"):
        p.predict_tensor(np.zeros((1, 3, 32, 32), np.float32))


def _copy_bundle(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_broken_bundles_are_refused(toy_coop, tmp_path) -> None:
    wrong_version = _copy_bundle(toy_coop.path, tmp_path / "v")
    manifest = json.loads((wrong_version / "manifest.json").read_text())
    manifest["format_version"] = 99
    (wrong_version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SalkitError, match="version 99"):
        Predictor.from_bundle(wrong_version)
    tampered = _copy_bundle(toy_coop.path, tmp_path / "h")
    with open(tampered / "energy_grad.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(SalkitError, match="energy_grad.onnx has SHA-256"):
        Predictor.from_bundle(tampered)
    missing = _copy_bundle(toy_coop.path, tmp_path / "m")
    (missing / "encoder.onnx").unlink()
    with pytest.raises(SalkitError, match="encoder.onnx is missing"):
        Predictor.from_bundle(missing)
    with pytest.raises(SalkitError, match="does not exist"):
        Predictor.from_bundle(tmp_path / "nowhere")
    incomplete = _copy_bundle(toy_coop.path, tmp_path / "i")
    manifest = json.loads((incomplete / "manifest.json").read_text())
    del manifest["coop"]["latent_dim"]
    (incomplete / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SalkitError, match="latent_dim"):
        Predictor.from_bundle(incomplete)


def test_importing_the_runtime_stays_light() -> None:
    code = "import sys, salkit.runtime; print([m for m in ('onnxruntime', 'torch', 'PIL') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("document", ["README.md", "docs/runtime.md"])
def test_documented_example_runs(toy_coop, document: str) -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / document).read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {"BUNDLE": toy_coop.path}
    exec(compile(code, document, "exec"), scope)
    assert scope["saliency"].shape == (120, 90)
    assert scope["refined"][0].shape == (120, 90) and scope["epistemic"].shape == (120, 90)
