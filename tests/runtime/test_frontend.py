"""The one image-level front end: the Python API (ImageCalls over a BatchingPredictor) and the
server's models turn the same images and maps into the same batches, maps and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from salkit.base.errors import SalkitError
from salkit.runtime.batching_predictor import BatchingPredictor
from salkit.runtime.frontend import FrontEnd
from salkit.runtime.server.app import create_app
from tests.runtime.fake_predictor import SIZE, FakePredictor, expected_refine, expected_saliency, make_manifest
from tests.runtime.server_helpers import binary_request, decode_response, json_tensor, make_client, wait_ready

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def fake() -> FakePredictor:
    return FakePredictor()


@pytest.fixture(scope="module")
def client(fake: FakePredictor):
    with make_client(create_app(lambda: fake, max_batch_size=4, max_delay_ms=1)) as c:
        wait_ready(c)
        yield c


def _pil_normalised(rgb: np.ndarray) -> np.ndarray:
    """Independent reference of the pre-processing: PIL bilinear to S × S, /255, (x − mean) / std."""
    m = make_manifest()
    small = np.asarray(Image.fromarray(rgb).resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32) / 255.0
    return ((small - np.float32(m.mean[0])) / np.float32(m.std[0])).transpose(2, 0, 1)


def test_front_end_against_pil() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (21, 34, 3), dtype=np.uint8)
    front = FrontEnd(make_manifest())
    batch = front.images([rgb])
    assert batch.sizes == [(21, 34)]
    np.testing.assert_allclose(batch.x[0], _pil_normalised(rgb), atol=1e-5)
    maps = rng.random((1, 2, SIZE, SIZE)).astype(np.float32)
    back = front.back(maps, batch)[0]
    for c in range(2):
        reference = np.asarray(Image.fromarray(maps[0, c]).resize((34, 21), Image.BILINEAR))
        np.testing.assert_array_equal(back[c], reference)
    assert front.back(maps * 3, batch, clip=True)[0].max() <= 1.0 < back.max() * 3


def test_api_and_server_give_the_same_maps(fake: FakePredictor, client) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (2, 23, 30, 3), dtype=np.uint8)
    start = np.random.default_rng(2).random((2, 1, 23, 30)).astype(np.float32)
    with BatchingPredictor(fake, max_batch_size=4, max_delay_ms=1) as api:
        prediction = api.predict(list(rgb), samples=2, steps=3)
        refined = api.refine(list(rgb), list(start[:, 0]), steps=5)
    x = np.stack([_pil_normalised(im) for im in rgb])
    for i in range(2):  # the API against the closed form through PIL
        reference = Image.fromarray(expected_saliency(x[i : i + 1], 2, 3)[0, 0]).resize((30, 23), Image.BILINEAR)
        np.testing.assert_allclose(prediction.saliency[i], np.asarray(reference), atol=1e-5)
    r = client.post("/v2/models/saliency/infer", json={"inputs": [json_tensor("IMAGE", rgb, "UINT8")], "parameters": {"samples": 2, "steps": 3}})
    served = decode_response(r.content, r.headers)
    np.testing.assert_array_equal(served["SALIENCY"][:, 0], np.stack(prediction.saliency))
    np.testing.assert_array_equal(served["UNCERTAINTY"][:, 0], np.stack(prediction.uncertainty["predictive"]))
    body = {"inputs": [json_tensor("IMAGE", rgb, "UINT8"), json_tensor("MAP", start, "FP32")], "parameters": {"steps": 5}}
    r = client.post("/v2/models/refine/infer", json=body)
    np.testing.assert_array_equal(decode_response(r.content, r.headers)["MAP"][:, 0], np.stack(refined))
    small = FrontEnd(make_manifest()).maps(list(start[:, 0]), FrontEnd(make_manifest()).images(list(rgb)))
    change = expected_refine(small, 5) - small  # refine's change at S × S, added to the given map at its size
    expected = [np.clip(start[i, 0] + np.asarray(Image.fromarray(change[i, 0]).resize((30, 23), Image.BILINEAR)), 0, 1)
                for i in range(2)]
    np.testing.assert_allclose(np.stack(refined), np.stack(expected), atol=1e-6)


@pytest.mark.parametrize(("value", "words"), [(np.nan, "holds 1 NaN/inf values"), (1.5, "must hold probabilities in [0, 1]")])
def test_api_and_server_refuse_a_map_alike(fake: FakePredictor, client, value: float, words: str) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (1, 12, 12, 3), dtype=np.uint8)
    bad = np.full((1, 1, 12, 12), 0.5, np.float32)
    bad[0, 0, 3, 4] = value
    with BatchingPredictor(fake, max_batch_size=4, max_delay_ms=1) as api, pytest.raises(SalkitError) as err:
        api.refine(list(rgb), [bad[0, 0]])
    assert f"map 0 {words}" in str(err.value)
    content, headers = binary_request([("IMAGE", rgb, "UINT8"), ("MAP", bad, "FP32")])  # binary: JSON has no NaN
    r = client.post("/v2/models/refine/infer", content=content, headers=headers)
    assert r.status_code == 400 and f"MAP 0 {words}" in r.json()["error"], r.text
