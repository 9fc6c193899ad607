"""runtime.images: decoding every kind of image, folder listing and pairing, preprocessing, maps."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salkit.base.errors import SalkitError
from salkit.base.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    decode_gray,
    decode_image,
    list_images,
    pair_by_stem,
    preprocess,
    read_mask,
    resize_map,
    save_png_map,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 17, 3), dtype=np.uint8)


def _save(path: Path, image: Image.Image, **kwargs: object) -> Path:
    image.save(path, **kwargs)
    return path


def test_rgb_png_round_trips_from_path_and_bytes(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", Image.fromarray(RGB))
    decoded = decode_image(path)
    assert decoded.dtype == np.uint8 and decoded.shape == (12, 17, 3)
    assert np.array_equal(decoded, RGB)
    assert np.array_equal(decode_image(path.read_bytes(), name="upload"), RGB)


def test_grayscale_alpha_palette_and_16_bit_are_converted(tmp_path: Path) -> None:
    gray = RGB[..., 0]
    out = decode_image(_save(tmp_path / "g.png", Image.fromarray(gray)))
    assert out.shape == (12, 17, 3) and all(np.array_equal(out[..., c], gray) for c in range(3))

    rgba = np.concatenate([RGB, RNG.integers(0, 256, (12, 17, 1), dtype=np.uint8)], axis=2)
    assert np.array_equal(decode_image(_save(tmp_path / "a.png", Image.fromarray(rgba))), RGB)

    palette = Image.fromarray(RGB).quantize(colors=16)
    assert np.array_equal(decode_image(_save(tmp_path / "p.png", palette)), np.asarray(palette.convert("RGB")))

    deep = (np.arange(12 * 17, dtype=np.uint16).reshape(12, 17) * 300).astype(np.uint16)
    out16 = decode_image(_save(tmp_path / "d.png", Image.fromarray(deep)))
    np.testing.assert_array_equal(out16[..., 1], np.rint(deep / 65535 * 255).astype(np.uint8))
    np.testing.assert_array_equal(decode_gray(tmp_path / "d.png"), out16[..., 0])


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.fromarray(RGB)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = _save(tmp_path / "r.jpg", image, exif=exif.tobytes(), quality=95)
    assert decode_image(path).shape == (17, 12, 3)


@pytest.mark.parametrize(
    "content",
    [b"", b"plain text, not an image", "truncated"],
    ids=["empty", "text", "truncated"],
)
def test_broken_files_raise_with_their_path(tmp_path: Path, content: object) -> None:
    path = tmp_path / "broken.jpg"
    if content == "truncated":
        buffer = io.BytesIO()
        Image.fromarray(np.repeat(np.repeat(RGB, 8, 0), 8, 1)).save(buffer, format="JPEG")
        content = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    path.write_bytes(content)
    with pytest.raises(SalkitError, match="broken.jpg"):
        decode_image(path)
    with pytest.raises(SalkitError, match="broken.jpg"):
        read_mask(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SalkitError, match="nope.png.*does not exist"):
        decode_image(tmp_path / "nope.png")
    with pytest.raises(SalkitError, match="directory"):
        decode_image(tmp_path)


def test_list_images_sorts_skips_hidden_and_lists_strangers(tmp_path: Path) -> None:
    for name in ("b.png", "a.JPG", "c.webp"):
        _save(tmp_path / name, Image.fromarray(RGB), **({"format": "JPEG"} if name.endswith("JPG") else {}))
    (tmp_path / ".DS_Store").write_bytes(b"x")
    (tmp_path / "nested").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "c.webp"]
    (tmp_path / "readme.txt").write_text("hi")
    (tmp_path / "model.onnx").write_text("hi")
    with pytest.raises(SalkitError, match="model.onnx.*readme.txt"):
        list_images(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SalkitError, match="holds no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(SalkitError, match="does not exist"):
        list_images(tmp_path / "missing")


def test_pair_by_stem_and_unmatched_listing(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for stem in ("x", "y", "z"):
        _save(a / f"{stem}.jpg", Image.fromarray(RGB), format="JPEG")
        _save(b / f"{stem}.png", Image.fromarray(RGB[..., 0]))
    pairs = pair_by_stem(a, b)
    assert [(p.name, q.name) for p, q in pairs] == [("x.jpg", "x.png"), ("y.jpg", "y.png"), ("z.jpg", "z.png")]
    (b / "y.png").unlink()
    _save(b / "w.png", Image.fromarray(RGB[..., 0]))
    with pytest.raises(SalkitError) as err:
        pair_by_stem(a, b)
    assert "y.jpg" in str(err.value) and "w.png" in str(err.value)
    _save(a / "x_side.png", Image.fromarray(RGB))
    _save(a / "w_extra_map.png", Image.fromarray(RGB))
    _save(b / "y.png", Image.fromarray(RGB[..., 0]))
    (b / "w.png").unlink()
    with pytest.raises(SalkitError, match="w_extra_map.png.*x_side.png"):
        pair_by_stem(a, b)
    with pytest.raises(SalkitError) as err:  # w has no prediction of its own, so w_extra_map is no side map
        pair_by_stem(a, b, skip_companions_in_a=True)
    assert "w_extra_map.png" in str(err.value) and "x_side" not in str(err.value)
    (a / "w_extra_map.png").unlink()
    assert [p.name for p, _ in pair_by_stem(a, b, skip_companions_in_a=True)] == ["x.jpg", "y.jpg", "z.jpg"]
    _save(a / "x.png", Image.fromarray(RGB))
    with pytest.raises(SalkitError, match="same stem.*x"):
        pair_by_stem(a, b)


def test_preprocess_matches_a_hand_computation() -> None:
    other = RNG.integers(0, 256, (30, 20, 3), dtype=np.uint8)
    batch = preprocess([RGB, Image.fromarray(other)], 16)
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == np.float32
    for i, image in enumerate((RGB, other)):
        resized = np.asarray(Image.fromarray(image).resize((16, 16), Image.BILINEAR), np.float64) / 255
        expected = ((resized - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)  # (S,S,3) → (3,S,S)
        np.testing.assert_allclose(batch[i], expected, atol=1e-5)
    unit = preprocess([RGB], 12, mean=(0, 0, 0), std=(1, 1, 1))  # 12 = no resize needed in height
    assert unit.min() >= 0 and unit.max() <= 1


@pytest.mark.parametrize(
    "bad",
    [RGB.astype(np.float32), RGB[..., 0], RGB[..., :2], np.zeros((0, 4, 3), np.uint8), "image.png"],
    ids=["float", "gray", "two-channels", "empty", "string"],
)
def test_preprocess_refuses_wrong_arrays(bad: object) -> None:
    with pytest.raises(SalkitError, match="image 0"):
        preprocess([bad], 16)


def test_preprocess_refuses_bad_options() -> None:
    with pytest.raises(SalkitError):
        preprocess([], 16)
    with pytest.raises(SalkitError):
        preprocess([RGB], 0)
    with pytest.raises(SalkitError):
        preprocess([RGB], 16, std=(1, 0, 1))


def test_resize_map_shapes_and_range() -> None:
    small = RNG.random((8, 6))
    big = resize_map(small, (32, 24))
    assert big.shape == (32, 24) and big.dtype == np.float32
    assert small.min() - 1e-6 <= big.min() and big.max() <= small.max() + 1e-6
    np.testing.assert_allclose(resize_map(np.full((5, 7), 0.25), (11, 3)), 0.25, atol=1e-7)
    np.testing.assert_allclose(resize_map(small, (8, 6)), small.astype(np.float32))
    assert resize_map(small[None], (4, 4)).shape == (4, 4)  # (1, H, W) is accepted


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.array([[0.1, np.nan]]), "NaN"),
        (np.array([[0.1, np.inf]]), "NaN/inf"),
        (np.zeros((2, 3, 4)), "2-D"),
        (np.zeros(5), "2-D"),
        (np.array([["a", "b"]]), "dtype"),
        ([[0.1, 0.2]], "numpy array"),
    ],
)
def test_maps_with_bad_values_or_shapes_are_refused(tmp_path: Path, bad: object, message: str) -> None:
    with pytest.raises(SalkitError, match=message):
        resize_map(bad, (4, 4))
    with pytest.raises(SalkitError, match=message):
        save_png_map(tmp_path / "m.png", bad)
    assert not any(tmp_path.iterdir())


def test_png_map_round_trip_and_atomic_refusal(tmp_path: Path) -> None:
    values = RNG.random((9, 13))
    path = tmp_path / "map.png"
    save_png_map(path, values)
    assert Image.open(path).mode == "L"
    back = read_mask(path)
    assert back.dtype == np.float32 and back.shape == (9, 13)
    assert np.abs(back - values).max() <= 0.5 / 255 + 1e-6
    before = path.read_bytes()
    with pytest.raises(SalkitError, match=r"\[0, 1\]"):
        save_png_map(path, values * 2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png"]  # no temporary files left
