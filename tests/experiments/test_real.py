"""`make real` end to end on a few real photographs: train → export → predict → eval, a tiny budget.

Reads ../shared/data/pascal-s (never copied): 6 train and 4 test photos, the ``smoke`` recipe
(one epoch of 3 steps per model at 32²). Skipped when the data folder is absent.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DATA = (ROOT / ".." / "shared" / "data" / "pascal-s").resolve()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not (DATA / "train.txt").is_file(), reason=f"the PASCAL-S photos are not at {DATA} (see docs/data-and-eval.md)"),
]


def _real_module():
    spec = importlib.util.spec_from_file_location("experiments_real", ROOT / "experiments" / "real.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_real_photographs_end_to_end(tmp_path: Path) -> None:
    from click.testing import CliRunner

    train_ids = (DATA / "train.txt").read_text().split()[:6]
    test_ids = (DATA / "test.txt").read_text().split()[:4]
    (tmp_path / "train.txt").write_text("\n".join(train_ids) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test_ids) + "\n")
    real = _real_module()
    out = tmp_path / "out"
    args = ["--out", str(out), "--data", str(DATA), "--train-data", str(DATA), "--train-split", str(tmp_path / "train.txt"),
            "--test-split", str(tmp_path / "test.txt"), "--also-split", str(tmp_path / "test.txt"), "--recipe", "smoke",
            "--lanes", "3"]
    result = CliRunner().invoke(real.main, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["n_test"] == 4 and set(results["rows"]) == set(real.MAP_FOLDERS)
    for row in results["rows"].values():
        assert 0.0 <= row["mae"] <= 1.0 and 0.0 <= row["s_measure"] <= 1.0
    assert results["rows"]["all-zero map"]["max_f"] < results["rows"]["centred Gaussian"]["max_f"]
    for stem in test_ids:  # every map at its photo's own size
        with Image.open(DATA / "img" / f"{stem}.jpg") as photo:
            for folder in real.MAP_FOLDERS.values():
                with Image.open(out / "maps" / folder / f"{stem}.png") as m:
                    assert m.size == photo.size, (folder, stem)
    assert (out / "bundle_coop" / "manifest.json").is_file() and (out / "bundle_qefpn" / "manifest.json").is_file()
    # refine's steps were judged on G(X)'s and the QE-FPN's maps of the held-out photos that gate the export
    coop_manifest = json.loads((out / "bundle_coop" / "manifest.json").read_text())
    calib = sorted(p.stem for p in (out / "calib" / "gt").iterdir())
    for source in ("gx", "qefpn"):
        assert sorted(p.stem for p in (out / "calib_maps" / source).iterdir()) == calib
    refine = coop_manifest["extra"]["refine_steps"]
    assert set(refine["by_source"]) == {"gx", "qefpn"} and refine["photos"] == len(calib)
    assert coop_manifest["coop"]["refine_steps"] == refine["chosen"]
    assert (out / "pretrain" / "finished").is_file() and (out / "synth" / "synth.json").is_file()
    # the energy job (started from the trained coop model) is what the coop bundle is exported from
    assert results["coop_checkpoint"] == "energy"
    assert json.loads((out / "stages" / "export.json").read_text())["bundles"]["bundle_coop"] == str(out / "energy" / "last.pt")
    # scribbles derived from the (6) train masks; the scribble-trained model has its rows
    assert sorted(p.stem for p in (out / "scribbles" / "scribble").iterdir()) == sorted(train_ids)
    assert results["scribbles"]["images"] == 6 and 0 < results["scribbles"]["foreground_fraction"] < 0.2
    assert {"coop Ỹ, scribbles", "G(X,h) alone"} <= set(results["rows"])
    assert "| coop Ỹ |" in (out / "results.md").read_text()
    # the recorded duration covers every stage, the evaluation that writes the report included
    timing = results["timing"]
    assert set(timing["stages_wall_s"]) == {"data", "train", "export", "maps", "eval"}
    assert timing["stages_wall_s"]["eval"] > 0 and timing["stages_cpu_s"]["eval"] > 0
    with Image.open(out / "examples.png") as picture:
        assert picture.width > 6 * 160 and picture.height > 4 * 160
    # the maps were made in 3 processes (--lanes 3), a shard of the photos each: one process makes the same
    import shutil

    sharded = out.parent / "maps_sharded"
    shutil.copytree(out / "maps", sharded)
    import real_maps

    assert real_maps.stage_maps(out, real.recipe_jobs("smoke"), "energy", lambda m: None, workers=1)["photos"] == 4
    for folder in real.MAP_FOLDERS.values():
        for stem in test_ids:
            assert (out / "maps" / folder / f"{stem}.png").read_bytes() == (sharded / folder / f"{stem}.png").read_bytes(), (folder, stem)
    # a second call resumes: every stage is marked done, nothing is trained again
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- real-photographs:begin -->\nold\n<!-- real-photographs:end -->\n\n## after\n")
    again = CliRunner().invoke(real.main, [*args, "--readme", str(readme)])
    assert again.exit_code == 0, again.output
    assert "[2/6] train: done earlier" in again.output and "[3/6] export: done earlier" in again.output
    text = readme.read_text()
    assert "old" not in text and "| centred Gaussian |" in text and text.endswith("## after\n")
    assert (tmp_path / "docs" / "img" / "real_examples.png").is_file()


def test_bad_data_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    (tmp_path / "empty.txt").write_text("\n")
    result = CliRunner().invoke(_real_module().main, ["--out", str(tmp_path / "o"), "--data", str(DATA),
                                                      "--train-split", str(tmp_path / "empty.txt")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"error: split file {tmp_path / 'empty.txt'} lists no ids (empty split)"


def test_a_job_starts_from_its_init_job_and_resumes_from_its_own_checkpoint(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(ROOT / "experiments"))
    from real_train import RECIPES, command

    sources = {"train": ["--data", "D", "--split", "train"], "scribbles": ["--data", "S", "--split", "S/train.txt"]}
    job = RECIPES["smoke"]["energy"]
    first = command(tmp_path, sources, "energy", job, 1, 20)
    assert first[first.index("--init") + 1] == str(tmp_path / "coop" / "last.pt") and "--resume" not in first
    (tmp_path / "energy").mkdir()
    (tmp_path / "energy" / "last.pt").write_bytes(b"")
    again = command(tmp_path, sources, "energy", job, 1, 20)
    assert "--init" not in again and again[again.index("--resume") + 1] == str(tmp_path / "energy" / "last.pt")
    scribble = command(tmp_path, sources, "scribble", RECIPES["smoke"]["scribble"], 1, 20)
    assert scribble[1:5] == ["--data", "S", "--split", "S/train.txt"] and "--scribble" in scribble
    assert scribble[scribble.index("--seed") + 1] == "0"
    seeded = command(tmp_path, sources, "scribble", RECIPES["smoke"]["scribble"], 1, 20, seed=3)
    assert seeded[seeded.index("--seed") + 1] == "3"


def test_a_run_may_skip_the_jobs_nothing_else_needs() -> None:
    import sys

    from salkit.base.errors import SalkitError

    sys.path.insert(0, str(ROOT / "experiments"))
    from real_maps import rows_for
    from real_train import RECIPES, recipe_jobs

    jobs = recipe_jobs("full", ("gxh", "scribble"))
    assert list(jobs) == [n for n in RECIPES["full"] if n not in ("gxh", "scribble")]
    rows = rows_for(jobs)
    assert "G(X,h) alone" not in rows and "coop Ỹ, scribbles" not in rows and "QE-FPN + refine" in rows
    with pytest.raises(SalkitError, match="--skip coop: only gxh, scribble can be left out"):
        recipe_jobs("full", ("coop",))


def _bad_copy(tmp_path: Path, ids: list[str]) -> Path:
    """A PASCAL-S-layout folder of links to a few real files, for breaking one of them."""
    root = tmp_path / "bad"
    for sub in ("img", "gt"):
        (root / sub).mkdir(parents=True)
    for i in ids:
        (root / "img" / f"{i}.jpg").symlink_to(DATA / "img" / f"{i}.jpg")
        (root / "gt" / f"{i}.png").symlink_to(DATA / "gt" / f"{i}.png")
    (root / "train.txt").write_text("\n".join(ids[:3]) + "\n")
    (root / "test.txt").write_text(ids[3] + "\n")
    return root


@pytest.mark.parametrize("fault", ["unreadable photo", "mask of another size"])
def test_a_bad_file_is_named_in_one_line_and_exit_2(tmp_path: Path, fault: str) -> None:
    from click.testing import CliRunner

    ids = (DATA / "train.txt").read_text().split()[:3] + (DATA / "test.txt").read_text().split()[:1]
    root = _bad_copy(tmp_path, ids)
    if fault == "unreadable photo":
        bad = root / "img" / f"{ids[1]}.jpg"
        bad.unlink()
        bad.write_bytes((DATA / "img" / f"{ids[1]}.jpg").read_bytes()[:300])  # a truncated JPEG
    else:
        bad = root / "gt" / f"{ids[2]}.png"
        bad.unlink()
        Image.new("L", (17, 9)).save(bad)
    out = tmp_path / "o"
    result = CliRunner().invoke(_real_module().main, ["--out", str(out), "--data", str(root), "--recipe", "smoke"])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(bad) in last
    assert not (out / "stages" / "data.json").exists() and not (out / "coop").exists()


def test_centred_gaussian_reference() -> None:
    g = _real_module().centred_gaussian(30, 50)
    assert g.shape == (30, 50) and g.max() <= 1.0
    y, x = np.unravel_index(np.argmax(g), g.shape)
    assert (y, x) in {(14, 24), (14, 25), (15, 24), (15, 25)}
    # σ = 0.3 of each side: one σ from the centre along x, the value is e^(−½)
    np.testing.assert_allclose(_real_module().centred_gaussian(1, 1000)[0, 500 + 300], np.exp(-0.5), rtol=1e-2)


def test_recipe_trials_hold_out_part_of_the_train_split_and_keep_finished_trials(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from click.testing import CliRunner

    sys.path.insert(0, str(ROOT / "experiments"))
    import real_trials

    ids = (DATA / "train.txt").read_text().split()[:10] + (DATA / "test.txt").read_text().split()[:1]
    root = _bad_copy(tmp_path, ids)
    (root / "train.txt").write_text("\n".join(ids[:10]) + "\n")
    tiny = {"epochs": [1, 2], "args": ["--preset", "tiny", "--size", "32"]}
    monkeypatch.setattr(real_trials, "TRIALS", {"a": tiny, "b": {"epochs": [1], "args": [*tiny["args"], "--crop", "0.5"]},
                                                "c": {"epochs": [1], "max_steps": 1, "args": tiny["args"]}})
    out = tmp_path / "trials"
    first = CliRunner().invoke(real_trials.main, ["a", "--out", str(out), "--data", str(root), "--max-epochs", "1"])
    assert first.exit_code == 0, first.output
    assert len(json.loads((out / "a" / "rows.json").read_text())) == 1 and not (out / "a" / "trial.json").exists()
    result = CliRunner().invoke(real_trials.main, ["--out", str(out), "--data", str(root), "--parallel", "2"])
    assert result.exit_code == 0, result.output
    fit, held = ((out / f"{n}.txt").read_text().split() for n in ("fit", "held"))
    assert held == ids[0:10:5] and sorted(fit + held) == sorted(ids[:10]) and ids[10] not in fit + held
    records = json.loads((out / "trials.json").read_text())
    assert [(r["name"], r["epochs"]) for r in records] == [("a", 1), ("a", 2), ("b", 1), ("c", 1)]
    judged = records[:3]
    assert all(r["n_held"] == 2 and 0.0 <= r["yhat"]["mae"] <= 1.0 and 0.0 <= r["ytilde"]["s_measure"] <= 1.0 for r in judged)
    # the second row of "a" continued the first run (1 step per epoch here): its log reaches step 2
    assert (out / "a" / "coop" / "log.csv").read_text().strip().splitlines()[-1].startswith("2,")
    assert records[3]["steps"] == 1 and records[3]["cpu_s_per_step"] > 0 and "yhat" not in records[3]
    assert "| b | 1 |" in (out / "trials.md").read_text()
    stamp = (out / "a" / "trial.json").stat().st_mtime_ns
    again = CliRunner().invoke(real_trials.main, ["a", "--out", str(out), "--data", str(root)])
    assert again.exit_code == 0, again.output
    assert (out / "a" / "trial.json").stat().st_mtime_ns == stamp  # not trained again


def test_report_reads_every_number_from_the_results() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "experiments"))
    from real_report import markdown

    def row(mae: float, s: float) -> dict[str, float]:
        return {"mae": mae, "s_measure": s, "max_f": 0.5, "mean_f": 0.4, "mean_e": 0.6}

    results = {
        "n_test": 170, "train_split": "train", "protocol": "p", "recipe": "default", "coop_checkpoint": "energy",
        "rows": {"coop Ŷ": row(0.20, 0.66), "coop Ỹ": row(0.19, 0.67), "G(X)": row(0.18, 0.69), "G(X,h) alone": row(0.25, 0.60),
                 "coop Ŷ, scribbles": row(0.3, 0.55), "coop Ỹ, scribbles": row(0.3, 0.55), "centred Gaussian": row(0.37, 0.55),
                 "all-zero map": row(0.185, 0.39)},
        "epistemic_max_level": 1,
        "refine_delta": {"QE-FPN": {"mae": -0.01, "s_measure": 0.002}},
        "scribbles": {"foreground_fraction": 0.0045, "background_fraction": 0.01},
        "train": {"coop": {"cli": "train-coop", "epochs": 12, "batch": 8, "args": ["--size", "128"]}},
        "train_steps": {"coop": 1020}, "timing": {"stages_wall_s": {"train": 1800.0}, "cpu_bound_wall_min": 28.0,
                                                  "cores": 2, "cpu": "AMD EPYC", "train_job_cpu_s": {"coop": 1091.4}},
    }
    text = markdown(results, trials=[{"name": "128px", "epochs": 3, "n_held": 136, "train_cpu_s": 240.0,
                                       "yhat": row(0.2, 0.61), "ytilde": row(0.2, 0.62)},
                                      {"name": "G(X) 128px", "epochs": 6, "n_held": 136, "train_cpu_s": 120.0,
                                       "yhat": row(0.3, 0.64)}])
    assert "| coop Ỹ | 0.190 | 0.670 | 0.500 | 0.400 | 0.600 |" in text
    assert "0.670 misses the target 0.70" in text
    assert "coop Ỹ beats G(X,h) alone on MAE (0.190 vs 0.250) and S (0.670 vs 0.600)" in text
    assert "coop Ỹ does not beat G(X) on MAE (0.190 vs 0.180) or S (0.670 vs 0.690)" in text
    assert "MAE -0.0100, S +0.0100" in text  # Ŷ → Ỹ
    assert "0.45 % of pixels labelled foreground" in text and "MAE 0.300 / S 0.550" in text
    assert "| coop | train-coop | 12 | 1020 | 1.07 | 18.2 |" in text
    assert "| 128px | 3 | 4.0 | 0.200 | 0.610 | 0.500 | 0.620 |" in text
    assert "| G(X) 128px | 6 | 2.0 | 0.300 | 0.640 | 0.500 | — (G(X): no energy) |" in text  # a trial without Ỹ
    assert "the all-zero map's 0.185 beats 5 of the 6 trained rows' (not G(X))" in text
    assert "The scribble model's own energy leaves its maps as they were (Ŷ → Ỹ: MAE +0.0000, S +0.0000)" in text
    assert "at or below 1 of the 8-bit map's 255 levels" in text
    assert "reach at best S 0.640 (G(X) 128px, 6 epochs, 2.0 CPU min)" in text


@pytest.mark.parametrize("skipped, says", [(["gxh"], "was left out of this run (`--skip gxh`)"),
                                           ([], "is not in this recipe (`--recipe full` has it)")])
def test_report_says_why_a_row_is_missing(skipped: list[str], says: str) -> None:
    import sys

    sys.path.insert(0, str(ROOT / "experiments"))
    from real_report import markdown

    row = {"mae": 0.2, "s_measure": 0.6, "max_f": 0.5, "mean_f": 0.4, "mean_e": 0.6}
    results = {"n_test": 170, "train_split": "train", "protocol": "p", "recipe": "full", "seed": 1, "skipped": skipped,
               "rows": {"coop Ŷ": row, "coop Ỹ": row, "G(X)": row, "centred Gaussian": row, "all-zero map": row},
               "refine_delta": {"G(X)": {"mae": 0.0, "s_measure": 0.0}},
               "timing": {"stages_wall_s": {"train": 60.0}, "cpu_bound_wall_min": 1.0, "cores": 2, "cpu": "AMD EPYC"}}
    text = markdown(results)
    assert f"- G(X,h) trained alone {says}, so that half of Table 2 is not measured here." in text
    assert "One run, trainer seed 1" in text


def test_a_folder_keeps_the_seed_its_models_were_trained_with(tmp_path: Path) -> None:
    from click.testing import CliRunner

    module = _real_module()
    out = tmp_path / "o"
    (out / "coop").mkdir(parents=True)
    (out / "coop" / "last.pt").write_bytes(b"")  # a model trained before seeds were recorded: seed 0
    result = CliRunner().invoke(module.main, ["--out", str(out), "--data", str(DATA), "--seed", "1"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"error: {out} holds models of seed 0: resume it with --seed 0, or give seed 1 its own --out")
    assert not (out / "stages").exists()  # refused before any stage ran
    fresh = tmp_path / "f"
    module.check_seed(module.Run(fresh, DATA, "train", "test", "smoke", 1, 20, print, seed=2))
    assert json.loads((fresh / "seed.json").read_text()) == {"seed": 2}  # nothing trained: any seed may start it


def test_a_job_that_continues_another_trains_on_photos_the_other_has_not_seen(tmp_path: Path) -> None:
    """``skip``: the hour recipe's coop and G(X,h) start from G(X) and take the N pool photos after G(X)'s."""
    real = _real_module()
    ids = (DATA / "train.txt").read_text().split()[:100]
    run = type("Run", (), {"out": tmp_path, "train_data": DATA,
                           "jobs": {"gx": {"images": 30}, "coop": {"images": 10, "skip": 30, "init": "gx"}}})()
    info = real.job_splits(run, ids)
    gx, coop = ((tmp_path / "splits" / f"{n}.txt").read_text().split() for n in ("gx", "coop"))
    held = (tmp_path / "splits" / "heldout.txt").read_text().split()
    assert info["jobs"] == {"gx": 30, "coop": 10} and len(held) == 20
    assert not set(gx) & set(coop) and not (set(gx) | set(coop)) & set(held)
    hour = real.RECIPES["hour"]
    for name, job in hour.items():
        if job.get("init") == "gx":
            assert job["skip"] >= hour["gx"]["images"], name
    from real_train import HELDOUT  # importable once _real_module put experiments/ on the path

    for recipe in ("hour", "full"):  # every job's photos exist: DUTS-TR's pool after the held-out ids
        for name, job in real.RECIPES[recipe].items():
            assert job.get("skip", 0) + job["images"] <= 10553 - HELDOUT, (recipe, name)
    energy, coop = hour["energy"], hour["coop"]  # the energy fine-tune refines coop's maps of photos coop has not seen
    assert energy["skip"] >= coop["skip"] + coop["images"]


def test_a_trunk_job_waits_for_its_trunk_and_starts_from_that_backbone(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(ROOT / "experiments"))
    from real_train import command, waits_for

    sources = {"train": ["--data", "D", "--split", "train"]}
    job = {"cli": "train-qefpn", "epochs": 1, "batch": 2, "trunk": "gx", "args": ["--preset", "tiny"]}
    assert waits_for(job) == ["gx"] and waits_for({**job, "init": "pre"}) == ["pre", "gx"] and waits_for({}) == []
    first = command(tmp_path, sources, "qefpn", job, 1, 20)
    assert first[first.index("--backbone-weights") + 1] == str(tmp_path / "gx" / "last.pt") and "--init" not in first
    (tmp_path / "qefpn").mkdir()
    (tmp_path / "qefpn" / "last.pt").write_bytes(b"")
    again = command(tmp_path, sources, "qefpn", job, 1, 20)  # the checkpoint holds the weights already
    assert "--backbone-weights" not in again and again[again.index("--resume") + 1] == str(tmp_path / "qefpn" / "last.pt")


def test_trials_judge_a_make_real_checkpoint_and_start_from_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import sys

    from click.testing import CliRunner

    sys.path.insert(0, str(ROOT / "experiments"))
    import real_trials

    ids = (DATA / "train.txt").read_text().split()[:10]
    root = _bad_copy(tmp_path, ids)
    (root / "train.txt").write_text("\n".join(ids) + "\n")
    tiny = ["--preset", "tiny", "--size", "32"]
    monkeypatch.setattr(real_trials, "TRIALS", {"a": {"epochs": [1], "args": tiny},
                                                "judged": {"epochs": [1], "real_job": "coop", "judge": "h0"},
                                                "from it": {"epochs": [1], "init_real": "coop", "args": tiny}})
    out, run = tmp_path / "trials", tmp_path / "real"
    missing = CliRunner().invoke(real_trials.main, ["judged", "--out", str(out), "--data", str(root), "--real-run", str(run)])
    assert missing.exit_code == 2 and "Traceback" not in missing.output, missing.output
    assert missing.output.splitlines()[-1].startswith("error: make real's coop job has not finished in ")
    assert CliRunner().invoke(real_trials.main, ["a", "--out", str(out), "--data", str(root)]).exit_code == 0
    (run / "coop").mkdir(parents=True)
    shutil.copyfile(out / "a" / "coop" / "last.pt", run / "coop" / "last.pt")
    (run / "coop" / "finished").write_text(json.dumps({"cpu_s": 12.5, "steps_run": 1}) + "\n")
    commands, real_train = [], real_trials._train
    monkeypatch.setattr(real_trials, "_train", lambda cmd, log: commands.append(cmd) or real_train(cmd, log))
    result = CliRunner().invoke(real_trials.main, ["judged", "from it", "--out", str(out), "--data", str(root),
                                                   "--real-run", str(run)])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads((out / "trials.json").read_text())}
    assert rows["judged"]["train_cpu_s"] == 12.5 and rows["judged"]["real_job"] == "coop" and "ytilde" not in rows["judged"]
    assert rows["judged"]["yhat"] == real_trials._judge(run / "coop" / "last.pt", root, out / "held.txt", "h0")["yhat"]
    (cmd,) = commands  # "judged" trains nothing; "from it" starts from the make real checkpoint
    assert cmd[cmd.index("--init") + 1] == str(run / "coop" / "last.pt") and (out / "from_it" / "trial.json").is_file()


def test_a_scribble_trial_trains_on_the_scribbles_make_real_derives_from_its_photos(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from click.testing import CliRunner

    sys.path.insert(0, str(ROOT / "experiments"))
    import real_trials

    from salkit.base.layout import read_mask_bool
    from salkit.train.data.scribbles import scribble_from_mask, scribble_rng

    ids = (DATA / "train.txt").read_text().split()[:10]
    root = _bad_copy(tmp_path, ids)
    (root / "train.txt").write_text("\n".join(ids) + "\n")
    monkeypatch.setattr(real_trials, "TRIALS", {"s": {"epochs": [1], "images": 4, "data": "scribbles", "judge": "coop",
                                                      "args": ["--preset", "tiny", "--size", "32", "--scribble"]}})
    commands, real_train = [], real_trials._train
    monkeypatch.setattr(real_trials, "_train", lambda cmd, log: commands.append(cmd) or real_train(cmd, log))
    out = tmp_path / "trials"
    result = CliRunner().invoke(real_trials.main, ["s", "--out", str(out), "--data", str(root)])
    assert result.exit_code == 0, result.output
    (cmd,) = commands
    scribbles = Path(cmd[cmd.index("--data") + 1])
    trained = Path(cmd[cmd.index("--split") + 1]).read_text().split()
    assert trained == (out / "fit.txt").read_text().split()[:4]  # the trial's photos, none of the held-out ones
    for stem in trained:  # make real's derivation (its seed), photo by photo
        mask = read_mask_bool(root / "gt" / f"{stem}.png")
        expected = scribble_from_mask(mask, scribble_rng(real_trials.SCRIBBLE_SEED, stem))
        assert (np.asarray(Image.open(scribbles / "scribble" / f"{stem}.png")) == expected).all()
    row = json.loads((out / "trials.json").read_text())[0]
    assert "ytilde" in row and row["n_held"] == 2
