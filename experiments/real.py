"""`make real`: train on DUTS-TR from ImageNet backbones, export, and judge on all of PASCAL-S.

    python experiments/real.py [--out runs/real] [--train-data ../shared/data/duts-tr]
                               [--data ../shared/data/pascal-s] [--recipe hour|full|scratch|short|smoke]

The published protocol (the cooperative paper's Table 1): train on DUTS-TR, judge on every
PASCAL-S photograph (``--test-split all``); PASCAL-S's 170-photo ``test.txt`` is reported beside it
(``--also-split``) for continuity with the records trained on PASCAL-S's own train split
(``--train-data`` = ``--data``, as the ``smoke`` recipe's test does).

Stages, each finished one marked by ``<out>/stages/<name>.json`` (its duration and outputs), so a
second call resumes where the first stopped; an interrupted training resumes from its last
checkpoint (``--checkpoint-every`` steps, ``train-coop/train-qefpn --resume``):

1. ``data`` — decode and check every file of the train and test splits (one line naming a bad
   file, exit 2), link the test split's photos and masks into ``<out>/test`` (links, nothing is
   copied); set aside ``HELDOUT`` training photos no job sees (``<out>/splits/heldout.txt``: the
   recipe trials judge on them, and the first ``CALIB`` gate the exports' reduced precision,
   ``<out>/calib``); write each job's training ids (``<out>/splits/<job>.txt``) for recipes that
   train on a part of the set; derive scribbles from the scribble job's masks (``<out>/scribbles``);
2. ``train`` — the recipe's jobs (real_train.py): the cooperative model, its scribble-trained
   twin, the deterministic G(X) and latent G(X,h) baselines, the QE-FPN, and an optional ``energy``
   fine-tune that starts from the trained coop model; ``--lanes`` side by side, one progress line;
3. ``export`` — ``export-trt`` with default options → ``<out>/bundle_coop`` (from the ``energy``
   job's checkpoint when the recipe has one), ``<out>/bundle_qefpn``; the coop export also judges
   ``refine``'s step count on G(X)'s and the QE-FPN's maps of the held-out photos (``<out>/calib_maps``);
4. ``maps`` — every row's test-split maps at each photo's own size (real_maps.py);
5. ``eval`` — ``sal-runtime eval``'s metrics for every map folder → ``<out>/results.json``, ``results.md``;
6. ``picture`` — ``<out>/examples.png``: 6 test photos, labelled columns photo | ground truth | Ŷ |
   Ỹ after the energy | epistemic uncertainty | QE-FPN.

The default recipe, ``hour``, is the one chosen within the 60-minute budget of an idle 2-core
machine (experiments/real_trials.py; docs/data-and-eval.md, "Choosing the recipe"); ``--recipe full``
is the hours-long one (``make real-full``, resumable); ``--recipe smoke`` trains for a few steps only (tests).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from salkit.base.atomic import atomic_write_bytes, atomic_write_text
from salkit.base.errors import SalkitError, report_user_errors

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling modules
from real_maps import MAP_FOLDERS, PICTURE_COLUMNS, calib_maps, centred_gaussian, rows_for, stage_maps, stage_picture
from real_report import markdown, publish_readme, readme_section
from real_table1 import front_page
from real_train import BIN, RECIPES, SCRIBBLE_SEED, SKIPPABLE, coop_job, held_and_pool, recipe_jobs, stage_train

__all__ = ["MAP_FOLDERS", "PICTURE_COLUMNS", "RECIPES", "centred_gaussian", "main", "real"]
REPORT_DOC = "docs/results.md"  # the whole report; the README's section links to it
REPORT_MARKERS = ("<!-- real-photographs-details:begin -->", "<!-- real-photographs-details:end -->")


class Run:
    """The output folder, its stage markers, and the progress lines."""

    def __init__(self, out: Path, data: Path, train_split: str, test_split: str, recipe: str, lanes: int,
                 checkpoint_every: int, echo: Callable[[str], None], seed: int = 0, skip: tuple[str, ...] = (),
                 train_data: Path | None = None, also_split: str | None = None) -> None:
        self.out, self.data, self.train_split, self.test_split = out, data, train_split, test_split
        self.train_data = train_data or data  # the photos the jobs train on; ``data`` is the benchmark
        self.also_split = also_split
        self.recipe, self.lanes, self.checkpoint_every, self.echo = recipe, lanes, checkpoint_every, echo
        self.seed, self.skip = seed, tuple(skip)
        self.jobs = recipe_jobs(recipe, self.skip)
        self.trials: list[dict[str, Any]] | None = None  # the recipe trials' records, for the report

    def stage(self, index: int, name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        marker = self.out / "stages" / f"{name}.json"
        if marker.is_file():
            self.echo(f"[{index}/6] {name}: done earlier ({marker})")
            return json.loads(marker.read_text())
        self.echo(f"[{index}/6] {name} … ({time.strftime('%H:%M:%S')})")
        begun = marker.with_suffix(".begun")  # the stage's first start: an interrupted stage's duration counts from it
        if not begun.is_file():
            begun.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(begun, f"{time.time()}\n")
        started, cpu = time.time(), _cpu_seconds()
        info = work()
        info.update(wall_s=round(time.time() - started, 1), cpu_s=round(_cpu_seconds() - cpu, 1),
                    wall_since_begun_s=round(time.time() - float(begun.read_text()), 1))
        marker.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, json.dumps(info, indent=1) + "\n")
        self.echo(f"[{index}/6] {name}: {info['wall_s']:.0f} s")
        return info


def _cpu_seconds() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ---------------------------------------------------------------- 1. data
CALIB = 100  # the precision gate reads the first of them; the energy-step gate all (with their masks)


def _test_split(run: Run) -> str:
    """``all`` → a split file of every photo of the benchmark (``<out>/splits/all.txt``)."""
    if run.test_split != "all":
        return run.test_split
    from salkit.base.layout import duts_samples

    stems = sorted((s.stem for s in duts_samples(run.data, check_sizes=False)), key=_natural)
    path = run.out / "splits" / "all.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(stems) + "\n")
    return str(path)


def _natural(stem: str) -> tuple[int, str]:
    return (int(stem), "") if stem.isdigit() else (1 << 62, stem)


def job_splits(run: Run, ids: list[str]) -> dict[str, Any]:
    """Hold ids out (``held_and_pool``), give each job with ``images`` N of the rest: the first N, or
    the N after the first ``skip`` (a job that continues another's training on photos it has not seen)."""
    from salkit.train.data.scribbles import link_split

    held, pool = held_and_pool(ids)
    splits = run.out / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    atomic_write_text(splits / "heldout.txt", "\n".join(held) + "\n")
    info: dict[str, Any] = {"heldout": len(held), "pool": len(pool), "jobs": {}}
    for name, job in run.jobs.items():
        if job.get("images"):
            part = pool[job.get("skip", 0): job.get("skip", 0) + job["images"]]
            atomic_write_text(splits / f"{name}.txt", "\n".join(part) + "\n")
            info["jobs"][name] = len(part)
    if held:
        atomic_write_text(splits / "calib.txt", "\n".join(held[:CALIB]) + "\n")
        link_split(run.train_data, splits / "calib.txt", run.out / "calib", force=True)
        info["calib"] = min(CALIB, len(held))
    return info


def stage_data(run: Run) -> dict[str, Any]:
    from salkit.base.layout import check_dataset, read_split
    from salkit.train.data.scribbles import link_split, write_scribbles

    test_split = _test_split(run)
    train_ids = int(check_dataset(run.train_data, run.train_split)["samples"])  # decodes every file: names the first bad one
    int(check_dataset(run.data, test_split)["samples"])
    linked = link_split(run.data, test_split, run.out / "test", force=True)
    _, ids = read_split(run.train_data, run.train_split)
    info: dict[str, Any] = {"train_ids": train_ids, "test_ids": linked, "test_split": test_split,
                            "splits": job_splits(run, ids)}
    if any(job.get("data") == "scribbles" for job in run.jobs.values()):
        name = next(n for n, job in run.jobs.items() if job.get("data") == "scribbles")
        own = run.out / "splits" / f"{name}.txt"
        split = str(own) if own.is_file() else run.train_split
        stats = write_scribbles(run.train_data, split, run.out / "scribbles", seed=SCRIBBLE_SEED, force=True)
        split_file, _ = read_split(run.train_data, split)
        info["scribbles"] = {**stats, "seed": SCRIBBLE_SEED, "split": str(run.out / "scribbles" / f"{split_file.stem}.txt")}
    return info


# ---------------------------------------------------------------- 3. export
def stage_export(run: Run) -> dict[str, Any]:
    sources = {"qefpn": "qefpn", "coop": coop_job(run.jobs)}
    running = []
    for bundle, job in sources.items():  # both bundles side by side, one thread each
        log = run.out / "logs" / f"export_{bundle}.log"
        cmd = [str(BIN / "export-trt"), "--ckpt", str(run.out / job / "last.pt"), "--out", str(run.out / f"bundle_{bundle}"), "--force"]
        if (run.out / "calib").is_dir():  # the precision gate judges on held-out training photos, never the test set
            cmd += ["--calib", str(run.out / "calib")]
        if bundle == "coop" and (run.out / "calib" / "gt").is_dir():
            # refine's steps are judged on the maps it will revise: G(X)'s and the QE-FPN's of the same photos
            # (while the QE-FPN's export runs on the other core)
            for folder in calib_maps(run.out):
                cmd += ["--refine-maps", str(folder)]
        with open(log, "w") as handle:
            env = {**os.environ, "OMP_NUM_THREADS": "1"} if run.lanes > 1 else None
            running.append((job, log, subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)))
    for job, log, proc in running:
        if proc.wait() != 0:
            raise SalkitError(f"export of {job} failed — see {log}")
    return {"bundles": {f"bundle_{b}": str(run.out / job / "last.pt") for b, job in sources.items()}}


# ---------------------------------------------------------------- 5. eval
def stage_eval(run: Run, timings: dict[str, Any]) -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from salkit.base.metrics import SCALARS, evaluate_dirs

    started, cpu = time.time(), _cpu_seconds()
    folders = rows_for(run.jobs)
    gt = run.out / "test" / "gt"
    with ProcessPoolExecutor(max_workers=run.lanes, mp_context=multiprocessing.get_context("spawn")) as pool:  # a row per process
        scored = dict(zip(folders, pool.map(evaluate_dirs, [run.out / "maps" / f for f in folders.values()], [gt] * len(folders)), strict=True))
    rows = {row: {key: round(float(metrics[key]), 4) for key in SCALARS} for row, metrics in scored.items()}
    also = _also_rows(run) if run.also_split else None
    from real_paired import paired
    from real_table1 import PAIRED_CLAIMS

    by_photo = {claim: paired(run.out, MAP_FOLDERS[ours], MAP_FOLDERS[base], {"mae"})
                for claim, ours, base in PAIRED_CLAIMS if ours in rows and base in rows}
    refine_delta = {
        base: {key: round(rows[f"{base} + refine"][key] - rows[base][key], 4) for key in SCALARS}
        for base in ("QE-FPN", "G(X)")
    }
    # This stage's own share so far (the report is its last step), so that the duration covers every stage.
    begun = run.out / "stages" / "eval.begun"
    timings = {**timings, "eval": {"wall_s": round(time.time() - started, 1), "cpu_s": round(_cpu_seconds() - cpu, 1),
                                   "wall_since_begun_s": round(time.time() - (float(begun.read_text()) if begun.is_file() else started), 1)}}
    train = timings.get("train", {})
    rates, steps = train.get("job_cpu_s_per_step") or {}, train.get("steps") or {}
    if rates and all(rates.get(n) for n in steps):  # whole jobs, also the parts an interrupted process ran
        train = {**train, "cpu_bound_wall_s": sum(rates[n] * steps[n] for n in steps) / (train["lanes"] * train["threads"])}
    other_cpu = sum(float(v.get("cpu_s") or 0.0) for k, v in timings.items() if k != "train")
    from salkit.base.images import decode_gray, list_images

    # The epistemic maps are stored as entropy ÷ ln 2 in 8 bits: their largest level says how far the latent samples disagree.
    epistemic_max = max((int(decode_gray(p).max()) for p in list_images(run.out / "maps" / "coop_epistemic")), default=0)
    results = {
        "epistemic_max_level": epistemic_max,
        "dataset": str(run.data), "train_split": run.train_split, "test_split": run.test_split,
        "n_test": int(scored["all-zero map"]["n_images"]),
        "protocol": "maps at each photo's own size; gt binarised at > 128; per-image min-max scaling (sal-runtime eval)",
        "rows": rows, "refine_delta": refine_delta, "paired": by_photo, "recipe": run.recipe, "train": train.get("recipe"),
        "train_data": str(run.train_data), "also_split": also, "splits": timings.get("data", {}).get("splits"),
        "energy_steps": _bundle_energy_steps(run.out / "bundle_coop"),
        "seed": run.seed, "skipped": list(run.skip),
        "train_steps": train.get("steps"),
        "coop_checkpoint": coop_job(run.jobs), "scribbles": timings.get("data", {}).get("scribbles"),
        # Wall time from each stage's first start to its end: an interrupted and resumed stage's whole span.
        "timing": {"stages_wall_s": {k: v.get("wall_since_begun_s", v.get("wall_s")) for k, v in timings.items()},
                   "stages_last_call_wall_s": {k: v.get("wall_s") for k, v in timings.items()},
                   "stages_cpu_s": {k: v.get("cpu_s") for k, v in timings.items()},
                   "train_job_cpu_s": train.get("job_cpu_s"),
                   "train_job_cpu_s_per_step": train.get("job_cpu_s_per_step"),
                   # On an otherwise idle machine: the trainings' CPU time spread over the cores they used
                   # plus every other stage's whole CPU time (an upper bound for those).
                   "cpu_bound_wall_min": round((float(train.get("cpu_bound_wall_s") or 0.0) + other_cpu) / 60.0, 1),
                   "cpu": cpu_model(), "cores": os.cpu_count()},
    }
    atomic_write_text(run.out / "results.json", json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(run.out / "results.md", markdown(results, trials=run.trials))
    return {"results": str(run.out / "results.json")}


def _bundle_energy_steps(bundle: Path) -> dict[str, Any] | None:
    """The step count the export kept for the coop bundle's energy, and the table it judged (if it did)."""
    try:
        return json.loads((bundle / "manifest.json").read_text()).get("extra", {}).get("energy_steps")
    except (OSError, ValueError):
        return None


def _also_rows(run: Run) -> dict[str, Any]:
    """Every row again on the ids of ``--also-split`` (a part of the maps judged): the 170-photo continuity table."""
    from salkit.base.images import decode_gray
    from salkit.base.layout import read_split
    from salkit.base.metrics import SCALARS, evaluate_arrays

    _, ids = read_split(run.data, run.also_split)
    kept = [stem for stem in ids if (run.out / "test" / "gt" / f"{stem}.png").exists()]
    gts = [decode_gray(run.out / "test" / "gt" / f"{stem}.png") for stem in kept]
    rows = {}
    for row, folder in rows_for(run.jobs).items():
        preds = [decode_gray(run.out / "maps" / folder / f"{stem}.png") for stem in kept]
        metrics = evaluate_arrays(preds, gts, names=kept)
        rows[row] = {key: round(float(metrics[key]), 4) for key in SCALARS}
    return {"split": run.also_split, "n": len(kept), "rows": rows}


def check_seed(run: Run) -> None:
    """A folder keeps one seed: resuming it with another would mix two seeds' models in one table.

    ``<out>/seed.json`` records the seed once a job has trained there; a folder trained before it
    was recorded used the default, 0. Until something is trained, any seed may (re)start the folder."""
    record = run.out / "seed.json"
    trained = any((run.out / name / "last.pt").is_file() for name in RECIPES[run.recipe])
    if not trained:
        atomic_write_text(record, json.dumps({"seed": run.seed}) + "\n")
        return
    kept = int(json.loads(record.read_text()).get("seed", 0)) if record.is_file() else 0
    if kept != run.seed:
        raise SalkitError(f"{run.out} holds models of seed {kept}: resume it with --seed {kept}, or give seed {run.seed} its own --out")
    atomic_write_text(record, json.dumps({"seed": kept}) + "\n")


def real(run: Run) -> dict[str, Any]:
    if not run.data.is_dir():
        raise SalkitError(f"--data {run.data} does not exist (the PASCAL-S photos: see ../shared/data/README.md)")
    if not run.train_data.is_dir():
        raise SalkitError(f"--train-data {run.train_data} does not exist (DUTS-TR: see ../shared/data/README.md)")
    check_seed(run)
    started = time.time()
    timings: dict[str, Any] = {}
    timings["data"] = run.stage(1, "data", lambda: stage_data(run))
    sources = {"train": ["--data", str(run.train_data), "--split", run.train_split]}
    sizes = {"train": timings["data"]["train_ids"]}
    for name, count in timings["data"].get("splits", {}).get("jobs", {}).items():  # jobs that train on a part
        sources[name] = ["--data", str(run.train_data), "--split", str(run.out / "splits" / f"{name}.txt")]
        sizes[name] = count
    if "scribbles" in timings["data"]:
        sources["scribbles"] = ["--data", str(run.out / "scribbles"), "--split", timings["data"]["scribbles"]["split"]]
        sizes["scribbles"] = int(timings["data"]["scribbles"]["images"])
    timings["train"] = run.stage(2, "train", lambda: stage_train(run.out, run.jobs, run.lanes, run.checkpoint_every,
                                                                  sources, sizes, run.echo, run.seed))
    timings["export"] = run.stage(3, "export", lambda: stage_export(run))
    timings["maps"] = run.stage(4, "maps", lambda: stage_maps(run.out, run.jobs, coop_job(run.jobs), run.echo,
                                                                workers=run.lanes))
    (run.out / "stages" / "eval.json").unlink(missing_ok=True)  # cheap: always re-read the maps and timings
    timings["eval"] = run.stage(5, "eval", lambda: stage_eval(run, dict(timings)))
    timings["picture"] = run.stage(6, "picture", lambda: stage_picture(run.out))
    results = json.loads((run.out / "results.json").read_text())
    total = sum(float(t.get("wall_s", 0.0)) for t in timings.values())
    run.echo(f"results {run.out / 'results.json'} (stages {total / 60:.1f} min, this call {(time.time() - started) / 60:.1f} min)")
    for row, metrics in results["rows"].items():
        run.echo(f"  {row:<18} MAE {metrics['mae']:.4f}  S {metrics['s_measure']:.4f}  max F {metrics['max_f']:.4f}")
    return results


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", default="runs/real", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", default="../shared/data/pascal-s", show_default=True, type=click.Path(path_type=Path),
              help="The benchmark judged on (PASCAL-S layout: img/, gt/, test.txt).")
@click.option("--train-data", default="../shared/data/duts-tr", show_default=True, type=click.Path(path_type=Path),
              help="The photographs trained on (DUTS-TR layout: img/, gt/, train.txt); may be --data itself.")
@click.option("--train-split", default="train", show_default=True, help="Split name (TRAIN_DATA/N.txt) or file to train on.")
@click.option("--test-split", default="all", show_default=True, help="Split name or file of DATA to judge on; all = every photo.")
@click.option("--also-split", default="test", show_default=True,
              help="A second split of DATA reported beside it (PASCAL-S's 170 test photos); 'none' for none.")
@click.option("--recipe", default="hour", show_default=True, type=click.Choice(sorted(RECIPES)))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0),
              help="Every trainer's seed (weights, data order, noise): a second seed's run shows the spread.")
@click.option("--skip", multiple=True, type=click.Choice(SKIPPABLE),
              help="Leave a job out (repeatable): its rows are missing from the results.")
@click.option("--lanes", default=2, show_default=True, type=click.IntRange(1, 3), help="Trainings run side by side.")
@click.option("--checkpoint-every", default=20, show_default=True, type=click.IntRange(1), help="Steps between checkpoints.")
@click.option("--readme", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also rewrite this README's 'Real photographs' section (picture copied to docs/img/real_examples.png).")
@click.option("--trials", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The recipe trials' records (experiments/real_trials.py's trials.json) to show in the report.")
@report_user_errors
def main(out: Path, data: Path, train_data: Path, train_split: str, test_split: str, also_split: str, recipe: str,
         seed: int, skip: tuple[str, ...], lanes: int, checkpoint_every: int, readme: Path | None, trials: Path | None) -> None:
    """Train, export and evaluate on real photographs; resumes where a previous call stopped."""
    run = Run(out, data, train_split, test_split, recipe, lanes, checkpoint_every, lambda m: click.echo(m, err=True),
              seed, skip, train_data=train_data, also_split=None if also_split == "none" else also_split)
    if trials is not None:
        try:
            run.trials = json.loads(trials.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SalkitError(f"--trials {trials} cannot be read as JSON: {err}") from None
    if readme is not None:
        readme_section(readme)  # a README without the markers fails now, not after an hour of training
    results = real(run)
    if readme is not None:
        picture = readme.resolve().parent / "docs" / "img" / "real_examples.png"
        atomic_write_bytes(picture, (out / "examples.png").read_bytes())
        report = readme.resolve().parent / REPORT_DOC
        if results.get("train_data") != results.get("dataset") and report.is_file():
            # The front page gets the short form; the whole report goes into the doc it links to.
            publish_readme(report, markdown(results, picture="img/real_examples.png", trials=run.trials), *REPORT_MARKERS)
            publish_readme(readme, front_page(results, "docs/img/real_examples.png", REPORT_DOC))
        else:
            publish_readme(readme, markdown(results, picture="docs/img/real_examples.png", trials=run.trials))
        click.echo(f"README section and {picture} written", err=True)


if __name__ == "__main__":
    main()
