"""Photographs of every kind through every interface: maps at the photo's displayed size and orientation.

The kinds are made with PIL: odd sizes and aspect ratios, greyscale and CMYK JPEG, 16-bit PNG
(grey, and RGB written by hand since PIL cannot), EXIF-rotated JPEG and PNG, RGBA / LA / palette
PNG with transparency. Each goes through ``Predictor.predict`` (path, bytes, PIL image),
``sal-runtime predict``, ``sal-runtime refine`` and ``POST /predict``. Orientation is checked by
value: the map of an EXIF-rotated file equals the map of its pixels turned by hand.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from salkit.base.images import decode_image
from salkit.runtime.cli.main import main as sal_runtime
from salkit.runtime.predictor import Predictor

RNG = np.random.default_rng(11)


def _rgb(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    blob = ((yy - 0.3 * h) ** 2 + (xx - 0.7 * w) ** 2 < (0.2 * min(h, w)) ** 2)[:, :, None]  # an off-centre object
    noise = RNG.integers(0, 60, (h, w, 3))
    return np.where(blob, 200 + noise // 2, noise).astype(np.uint8)


def _png16(path: Path, array: np.ndarray) -> None:
    """A 16-bit RGB PNG written chunk by chunk (PIL writes 16 bits only for greyscale)."""
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _exif(image: Image.Image, orientation: int) -> bytes:
    exif = image.getexif()
    exif[0x0112] = orientation
    return exif.tobytes()


# name → (writer, displayed (H, W))
def _make(folder: Path) -> dict[str, tuple[Path, tuple[int, int]]]:
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, tuple[Path, tuple[int, int]]] = {}

    def add(name: str, image: Image.Image, displayed: tuple[int, int], **kw: object) -> None:
        path = folder / name
        image.save(path, **kw)
        made[name] = (path, displayed)

    add("wide.jpg", Image.fromarray(_rgb(23, 301)), (23, 301), quality=95)
    add("tall.png", Image.fromarray(_rgb(257, 19)), (257, 19))
    add("tiny.png", Image.fromarray(_rgb(3, 5)), (3, 5))
    add("grey.jpg", Image.fromarray(_rgb(40, 60)).convert("L"), (40, 60))
    add("cmyk.jpg", Image.fromarray(_rgb(41, 33)).convert("CMYK"), (41, 33))
    add("grey16.png", Image.fromarray(_rgb(30, 44)[:, :, 0].astype(np.uint16) * 257), (30, 44))
    _png16(folder / "rgb16.png", _rgb(26, 38).astype(np.uint16) * 257)
    made["rgb16.png"] = (folder / "rgb16.png", (26, 38))
    stored = Image.fromarray(_rgb(30, 50))
    add("exif6.jpg", stored, (50, 30), exif=_exif(stored, 6), quality=95)  # shown turned 90° clockwise
    add("exif8.png", stored, (50, 30), exif=_exif(stored, 8))
    add("exif3.jpg", stored, (30, 50), exif=_exif(stored, 3), quality=95)  # upside down
    rgba = np.dstack([_rgb(36, 28), RNG.integers(0, 256, (36, 28), dtype=np.uint8)])
    add("rgba.png", Image.fromarray(rgba), (36, 28))
    add("la.png", Image.fromarray(_rgb(22, 35)).convert("LA"), (22, 35))
    palette = Image.fromarray(_rgb(31, 29)).convert("P")
    palette.info["transparency"] = 0
    add("palette.png", palette, (31, 29))
    return made


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, tuple[int, int]]]:
    return _make(tmp_path_factory.mktemp("photos") / "img")


@pytest.fixture(scope="module")
def predictor(toy_coop):
    with Predictor.from_bundle(toy_coop.path, backend="ort-cpu", threads=1) as p:
        yield p


def test_python_api_paths_bytes_and_pil_images(photos, predictor) -> None:
    for name, (path, displayed) in photos.items():
        by_path = predictor.predict(path, seed=0).saliency[0]
        assert by_path.shape == displayed, name
        assert 0 <= by_path.min() and by_path.max() <= 1
        assert np.array_equal(predictor.predict(path.read_bytes(), seed=0).saliency[0], by_path), name
        with Image.open(path) as img:
            assert np.array_equal(predictor.predict(img, seed=0).saliency[0], by_path), name


@pytest.mark.parametrize(("name", "turn"), [("exif6.jpg", -1), ("exif8.png", 1), ("exif3.jpg", 2)])
def test_exif_orientation_gives_the_map_of_the_displayed_photo(photos, predictor, name: str, turn: int) -> None:
    path, _ = photos[name]
    with Image.open(path) as img:
        stored = np.asarray(img.convert("RGB"))  # the pixels as stored, no EXIF applied
    by_hand = np.ascontiguousarray(np.rot90(stored, k=turn))  # np.rot90: k=1 turns counter-clockwise
    want = predictor.predict(by_hand, seed=0).saliency[0]
    got = predictor.predict(path, seed=0).saliency[0]
    np.testing.assert_array_equal(got, want)
    wrong = predictor.predict(np.ascontiguousarray(np.rot90(stored, k=turn + 2)), seed=0).saliency[0]
    assert np.abs(wrong - want).max() > 1e-3  # the check would notice a map turned the wrong way


def test_16_bit_and_alpha_decode_like_their_8_bit_pictures(photos) -> None:
    rgb16 = decode_image(photos["rgb16.png"][0])
    grey16 = decode_image(photos["grey16.png"][0])
    assert rgb16.dtype == grey16.dtype == np.uint8 and rgb16.shape == (26, 38, 3) and grey16.shape == (30, 44, 3)
    assert rgb16.max() > 150 and grey16.max() > 150  # scaled by 65535, not clipped to 255 or left dark
    rgba = np.asarray(Image.open(photos["rgba.png"][0]))
    assert np.array_equal(decode_image(photos["rgba.png"][0]), rgba[:, :, :3])  # alpha dropped, as OpenCV does


def test_uint16_arrays_equal_their_8_bit_pictures(predictor) -> None:
    rgb = _rgb(20, 30)
    want = predictor.predict(rgb, seed=0).saliency[0]
    np.testing.assert_array_equal(predictor.predict(rgb.astype(np.uint16) * 257, seed=0).saliency[0], want)


def _run(*args: object):
    return CliRunner().invoke(sal_runtime, [str(a) for a in args])


def test_cli_predict_and_refine_write_maps_at_the_displayed_size(photos, toy_coop, tmp_path: Path) -> None:
    folder = next(iter(photos.values()))[0].parent
    pred = tmp_path / "pred"
    result = _run("predict", "--engine", toy_coop.path, "--input", folder, "--out", pred, "--backend", "ort-cpu",
                  "--threads", "1", "--strict")
    assert result.exit_code == 0, result.output
    for name, (_, displayed) in photos.items():
        with Image.open(pred / f"{Path(name).stem}.png") as img:
            assert img.size[::-1] == displayed, name
    refined = tmp_path / "refined"
    result = _run("refine", "--engine", toy_coop.path, "--input", folder, "--maps", pred, "--out", refined,
                  "--backend", "ort-cpu", "--threads", "1", "--strict")
    assert result.exit_code == 0, result.output
    for name, (_, displayed) in photos.items():
        with Image.open(refined / f"{Path(name).stem}.png") as img:
            assert img.size[::-1] == displayed, name


def test_refine_refuses_a_map_in_the_stored_orientation(photos, toy_coop, tmp_path: Path) -> None:
    images, maps = tmp_path / "img", tmp_path / "maps"
    images.mkdir()
    maps.mkdir()
    path, (h, w) = photos["exif6.jpg"]
    (images / path.name).write_bytes(path.read_bytes())
    Image.fromarray(np.zeros((w, h), np.uint8)).save(maps / "exif6.png")  # stored 30×50, displayed 50×30
    result = _run("refine", "--engine", toy_coop.path, "--input", images, "--maps", maps, "--out", tmp_path / "out",
                  "--backend", "ort-cpu", "--threads", "1")
    assert result.exit_code == 1 and "exif6.png" in result.output and "displayed orientation" in result.output


def test_http_predict_answers_at_the_displayed_size(photos, toy_coop, predictor) -> None:
    from salkit.runtime.server.app import create_app
    from tests.runtime.server_helpers import make_client, wait_ready

    app = create_app(lambda: Predictor.from_bundle(toy_coop.path, backend="ort-cpu", threads=1), max_batch_size=2, max_delay_ms=1)
    with make_client(app) as client:
        wait_ready(client)
        for name, (path, displayed) in photos.items():
            r = client.post("/predict?seed=0&format=json", content=path.read_bytes())
            assert r.status_code == 200, (name, r.text)
            body = r.json()
            assert (body["height"], body["width"]) == displayed, name
            want = predictor.predict(path, seed=0).saliency[0]
            np.testing.assert_allclose(np.asarray(body["saliency"]), want, atol=1e-5, err_msg=name)
            png = client.post("/predict?seed=0", content=path.read_bytes())
            assert Image.open(io.BytesIO(png.content)).size[::-1] == displayed, name
