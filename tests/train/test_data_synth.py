"""The procedural dataset: determinism, scribble/mask consistency, variety, files, CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull

from salkit.base.errors import SalkitError
from salkit.train.data import synth
from salkit.train.data.cli import main as sal_data
from salkit.train.data.synth import CUES, SHAPES, draw_shape, make_scene, write_dataset

SCENES = 60  # at 64 px: enough to see every shape, cue and object count


@pytest.fixture(scope="module")
def scenes() -> list[synth.Scene]:
    return [make_scene(7, i, 64) for i in range(SCENES)]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_scene_is_a_function_of_seed_and_index() -> None:
    a, b = make_scene(3, 5, 64), make_scene(3, 5, 64)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and np.array_equal(a.scribble, b.scribble)
    assert a.objects == b.objects
    assert not np.array_equal(a.image, make_scene(4, 5, 64).image)
    assert not np.array_equal(a.image, make_scene(3, 6, 64).image)


def test_dataset_files_are_identical_for_a_seed_and_prefix_stable(tmp_path: Path) -> None:
    write_dataset(tmp_path / "a", n=5, size=48, seed=11)
    write_dataset(tmp_path / "b", n=5, size=48, seed=11)
    write_dataset(tmp_path / "c", n=3, size=48, seed=11)
    write_dataset(tmp_path / "d", n=5, size=48, seed=12)
    a, b, c, d = (_digest(tmp_path / k) for k in "abcd")
    assert a == b
    shared = {k: v for k, v in a.items() if k in c and k != "synth.json"}
    assert len(shared) == 9 and all(c[k] == v for k, v in shared.items())  # 3 scenes × img/gt/scribble
    assert all(a[k] != d[k] for k in a if k.endswith(".jpg"))


def test_scribbles_agree_with_masks(scenes: list[synth.Scene]) -> None:
    for i, scene in enumerate(scenes):
        assert set(np.unique(scene.scribble).tolist()) == {0, 1, 2}, f"scene {i} lacks a stroke kind"
        assert not (scene.scribble == 1)[~scene.mask].any(), f"scene {i}: foreground stroke outside the mask"
        assert not (scene.scribble == 2)[scene.mask].any(), f"scene {i}: background stroke inside the mask"
        coverage = np.count_nonzero(scene.scribble) / scene.scribble.size
        assert 0.003 < coverage < 0.1, f"scene {i}: scribbles cover {coverage:.3%}"


def test_every_salient_object_gets_a_foreground_stroke(scenes: list[synth.Scene]) -> None:
    for i, scene in enumerate(scenes):
        # 8-connected parts; slivers under 20 px (rasterised star tips, cut-off edges) need no stroke.
        components, count = ndimage.label(scene.mask, structure=np.ones((3, 3)))
        touched = set(np.unique(components[scene.scribble == 1]).tolist()) - {0}
        sizable = {k for k in range(1, count + 1) if np.count_nonzero(components == k) >= 20}
        assert sizable and sizable <= touched, f"scene {i}: an object part has no foreground stroke"


def test_scenes_vary_in_objects_shapes_cues_and_distractors(scenes: list[synth.Scene]) -> None:
    assert {len(s.objects) for s in scenes} == {1, 2, 3}
    assert {o["shape"] for s in scenes for o in s.objects} == set(SHAPES)
    assert {o["cue"] for s in scenes for o in s.objects} == set(CUES)
    assert all(1 <= s.distractors <= 3 for s in scenes)
    areas = np.array([s.mask.mean() for s in scenes])
    assert areas.min() < 0.05 and areas.max() > 0.2, "object sizes should vary"


def test_saliency_is_not_a_global_brightness_threshold(scenes: list[synth.Scene]) -> None:
    """The best single luminance threshold (either polarity) must not recover the masks."""
    best = []
    for scene in scenes:
        luminance = scene.image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # (S,S,3) → (S,S)
        ious = []
        for t in np.linspace(0, 255, 64):
            for guess in (luminance > t, luminance < t):
                ious.append(np.count_nonzero(guess & scene.mask) / max(np.count_nonzero(guess | scene.mask), 1))
        best.append(max(ious))
    assert np.mean(best) < 0.9
    # Backgrounds are textured, not flat.
    assert min(scene.image[~scene.mask].std(axis=0).mean() for scene in scenes) > 4


def _solidity(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    corners = np.concatenate([np.c_[xs + dx, ys + dy] for dx in (0, 1) for dy in (0, 1)]).astype(float)  # pixel squares
    return float(mask.sum() / ConvexHull(corners).volume)


@pytest.mark.parametrize("kind", SHAPES)
def test_shape_families_have_their_geometry(kind: str) -> None:
    rng = np.random.default_rng(0)
    masks = [draw_shape(kind, rng, 64, 32.0, 32.0, 20.0) for _ in range(10)]
    solidity = [_solidity(m) for m in masks]
    holes = [int(ndimage.binary_fill_holes(m).sum() - m.sum()) for m in masks]
    if kind in ("ellipse", "polygon"):
        assert min(solidity) > 0.85 and max(holes) == 0
    elif kind in ("star", "crescent"):
        assert max(solidity) < 0.8 and max(holes) == 0
    elif kind == "limbs":  # thin parts: a 3×3 opening wipes out a good share of the shape
        thin = [1 - ndimage.binary_opening(m, structure=np.ones((3, 3))).sum() / m.sum() for m in masks]
        assert max(solidity) < 0.8 and min(thin) > 0.1, thin
    elif kind in ("ring", "frame"):
        assert min(holes) > 50
    else:  # blob: wavy outline, not convex
        assert max(solidity) < 0.95


def test_written_files_follow_duts_and_sduts_conventions(synthetic_dataset: Path) -> None:
    stems = sorted(p.stem for p in (synthetic_dataset / "img").glob("*.jpg"))
    assert len(stems) == 12
    for stem in stems:
        image = Image.open(synthetic_dataset / "img" / f"{stem}.jpg")
        gt = np.asarray(Image.open(synthetic_dataset / "gt" / f"{stem}.png"))
        scribble = np.asarray(Image.open(synthetic_dataset / "scribble" / f"{stem}.png"))
        assert image.mode == "RGB" and image.size == (64, 64)
        assert gt.shape == scribble.shape == (64, 64)
        assert set(np.unique(gt).tolist()) == {0, 255}
        assert set(np.unique(scribble).tolist()) <= {0, 1, 2}
        assert not (scribble == 1)[gt == 0].any() and not (scribble == 2)[gt == 255].any()


def test_other_sizes(tmp_path: Path) -> None:
    for size in (32, 96):
        scene = make_scene(0, 0, size)
        assert scene.image.shape == (size, size, 3) and scene.image.dtype == np.uint8
        assert scene.mask.shape == scene.scribble.shape == (size, size)


def test_bad_arguments_and_existing_output(tmp_path: Path) -> None:
    with pytest.raises(SalkitError, match="--n"):
        write_dataset(tmp_path / "x", n=0, size=64, seed=0)
    with pytest.raises(SalkitError, match="--size"):
        write_dataset(tmp_path / "x", n=1, size=8, seed=0)
    write_dataset(tmp_path / "x", n=1, size=32, seed=0)
    with pytest.raises(SalkitError, match="already exists"):
        write_dataset(tmp_path / "x", n=1, size=32, seed=0)


def test_failed_generation_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_dataset(tmp_path / "old", n=2, size=32, seed=0)
    before = _digest(tmp_path / "old")
    real = synth.make_scene

    def failing(seed: int, index: int, size: int) -> synth.Scene:
        if index == 2:
            raise RuntimeError("simulated crash")
        return real(seed, index, size)

    monkeypatch.setattr(synth, "make_scene", failing)
    with pytest.raises(RuntimeError):
        write_dataset(tmp_path / "new", n=5, size=32, seed=0)
    with pytest.raises(RuntimeError):
        write_dataset(tmp_path / "old", n=5, size=32, seed=1, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert _digest(tmp_path / "old") == before


def test_cli_synth_check_and_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "data"
    result = runner.invoke(sal_data, ["synth", "--out", str(out), "--n", "4", "--size", "40", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "scribble").glob("*.png"))) == 4
    first = _digest(out)

    again = runner.invoke(sal_data, ["synth", "--out", str(out), "--n", "4", "--size", "40", "--seed", "3"])
    assert again.exit_code == 2
    assert again.stderr.strip().count("\n") == 0 and str(out) in again.stderr and "--force" in again.stderr
    assert _digest(out) == first

    forced = runner.invoke(sal_data, ["synth", "--out", str(out), "--n", "4", "--size", "40", "--seed", "3", "--force"])
    assert forced.exit_code == 0 and _digest(out) != first

    checked = runner.invoke(sal_data, ["check", str(out)])
    assert checked.exit_code == 0 and "ok: 4 samples" in checked.output

    (out / "gt" / "synth_00001.png").unlink()
    broken = runner.invoke(sal_data, ["check", str(out)])
    assert broken.exit_code == 2 and "synth_00001.jpg" in broken.stderr
