"""Model kinds: the registry's errors, and a third kind registered here running through the
generic paths (Predictor, CLI, server, model config, bench) with none of them naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from salkit.base import images
from salkit.base.errors import SalkitError
from salkit.runtime.bench.flops import graph_flops
from salkit.runtime.bench.record import format_record, run_bench
from salkit.runtime.cli.main import main
from salkit.runtime.kinds import KINDS, get_kind, kind_of, known_kinds
from salkit.runtime.predictor import Predictor
from salkit.runtime.server.app import create_app
from salkit.runtime.server.model_config import model_settings
from tests.runtime.server_helpers import binary_request, decode_response, make_client, wait_ready
from tests.runtime.toy_kind import TEMPERATURE, ToyKind, build_toy_bundle, reference

pytestmark = pytest.mark.timeout(300)


def test_unknown_kind_is_one_line_naming_the_known_ones() -> None:
    assert {"coop", "qefpn"} <= set(known_kinds())
    with pytest.raises(SalkitError) as err:
        get_kind("stable_diffusion")
    message = str(err.value)
    assert "unknown model kind 'stable_diffusion'" in message and "'coop'" in message and "'qefpn'" in message
    assert "\n" not in message


def test_export_registry_refuses_an_unknown_kind_in_one_line() -> None:
    from salkit.export.kinds import EXPORT_KINDS, get_export_kind

    assert set(EXPORT_KINDS) == {"coop", "qefpn"}
    with pytest.raises(SalkitError, match=r"^export knows no model kind 'toy' \(expected one of \['coop', 'qefpn'\]\)$"):
        get_export_kind("toy")


def test_a_kind_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        from salkit.runtime.kinds import register_kind

        register_kind(KINDS["coop"])


def _edited_copy(source: Path, target: Path, edit) -> Path:
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    edit(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(model_kind="nope"), "unknown model kind 'nope' (expected one of ['coop', 'qefpn'])"),
    (lambda m: m["graphs"].pop("energy_grad"), "coop bundle lacks graphs ['energy_grad']"),
])
def test_cli_refuses_a_bundle_of_an_unknown_kind_or_missing_graphs(toy_coop, tmp_path, edit, message) -> None:
    bundle = _edited_copy(toy_coop.path, tmp_path / "bad", edit)
    image = tmp_path / "a.png"
    images.save_png_map(image, np.full((8, 8), 0.5, np.float32))
    out = tmp_path / "out"
    for command in (["predict", "--engine", bundle, "--input", image, "--out", out],
                    ["serve", "--engine", bundle, "--port", "1"]):
        result = CliRunner().invoke(main, [str(a) for a in command])
        assert result.exit_code == 2, result.output
        assert result.output.count("error:") == 1 and message in result.output
    assert not out.exists()


@pytest.fixture()
def toy_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bundle of the test-only kind ``toy``, registered for the test's duration."""
    monkeypatch.setitem(KINDS, "toy", ToyKind())
    path = tmp_path / "toy"
    build_toy_bundle(path)
    return path


def _batch(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, 3, size, size)).astype(np.float32)


def test_a_third_kind_predicts_through_the_predictor(toy_kind: Path, tmp_path: Path) -> None:
    with Predictor.from_bundle(toy_kind, backend="ort-cpu", threads=1) as predictor:
        assert predictor.kind == "toy" and isinstance(kind_of(predictor.manifest), ToyKind)
        x = _batch(3, predictor.manifest.input_size)  # 3 rows over chunks of the bundle's max batch 2
        out = predictor.predict_tensor(x)
        np.testing.assert_allclose(out["saliency"], reference(x), atol=1e-5)
        logits = np.log(reference(x) / (1 - reference(x))) * TEMPERATURE
        np.testing.assert_allclose(out["peak"], logits.reshape(3, -1).max(axis=1), atol=1e-4)
        photo = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)
        result = predictor.predict([photo])
        assert result.saliency[0].shape == (20, 28) and result.uncertainty is None and list(result.stats) == ["peak"]
        with pytest.raises(SalkitError, match="refine needs a cooperative"):
            predictor.refine_tensor(x, np.full((3, 1, *x.shape[2:]), 0.5, np.float32))
    assert model_settings(predictor.manifest) == {"kind": "toy", "temperature": TEMPERATURE, "steps": 0}
    folder = tmp_path / "photos"
    folder.mkdir()
    images.save_png_map(folder / "a.png", np.full((12, 12), 0.25, np.float32))
    run = lambda *extra: CliRunner().invoke(main, ["predict", "--engine", str(toy_kind), "--input", str(folder), *extra])
    assert run("--out", str(tmp_path / "maps")).exit_code == 0 and (tmp_path / "maps" / "a.png").is_file()
    refused = run("--out", str(tmp_path / "u"), "--uncertainty")
    assert refused.exit_code == 2 and "--uncertainty needs" in refused.output and "is toy" in refused.output


def test_a_third_kind_is_served_under_its_models(toy_kind: Path) -> None:
    app = create_app(lambda: Predictor.from_bundle(toy_kind, backend="ort-cpu", threads=1), max_batch_size=2, max_delay_ms=1)
    x = _batch(2, 32)
    with make_client(app) as client:
        wait_ready(client)
        assert client.get("/v2/models/refine").status_code == 404
        config = client.get("/v2/models/saliency/config").json()
        assert config["platform"] == "salkit_toy"
        assert json.loads(config["parameters"]["salkit_settings"]["string_value"])["temperature"] == TEMPERATURE
        body, headers = binary_request([("IMAGE", x, "FP32")], outputs=[{"name": "SALIENCY"}])
        r = client.post("/v2/models/saliency/infer", content=body, headers=headers)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(decode_response(r.content, r.headers)["SALIENCY"], reference(x), atol=1e-5)
        photo = np.random.default_rng(1).integers(0, 256, (10, 14, 3), dtype=np.uint8)
        answer = client.post("/predict", content=_png(photo))  # /predict goes to the kind's first served model
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/png"


def _png(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_third_kind_is_benched_by_its_own_flops(toy_kind: Path) -> None:
    record = run_bench(toy_kind, [1, 2], backend="ort-cpu", threads=1, warmup=0, repeat=1, gemm_size=64)
    net = graph_flops(toy_kind / "net.onnx")
    assert set(record["toy"]) == {"1", "2"} and record["settings"]["samples"] is None
    for entry in record["toy"].values():
        assert set(entry["paths"]) == {"split"} and entry["gflop_per_image"] * 1e9 == pytest.approx(net)
        assert entry["breakdown"] is None  # the toy binds no graph runs to time: no split into graph and host time
    assert "(toy, plan" in format_record(record)
