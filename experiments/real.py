"""`make real`: train, export and judge the models on real photographs (PASCAL-S's fixed split).

    python experiments/real.py [--out runs/real] [--data ../shared/data/pascal-s] [--recipe default]

Stages, each finished one marked by ``<out>/stages/<name>.json`` (its duration and outputs), so a
second call resumes where the first stopped; an interrupted training resumes from its last
checkpoint (``--checkpoint-every`` steps, ``train-coop/train-qefpn --resume``):

1. ``data`` — check the train and test splits (one line naming a bad file, exit 2), link the test
   split's photos and masks into ``<out>/test`` (links, nothing is copied);
2. ``train`` — the cooperative model, the deterministic G(X) baseline (``--generator-only
   deterministic``) and the QE-FPN on the train split, with the users' commands, in ``--lanes``
   parallel processes (logs in ``<out>/logs``; one progress line for all of them);
3. ``export`` — ``export-trt`` with default options → ``<out>/bundle_coop``, ``<out>/bundle_qefpn``;
4. ``maps`` — the test split's maps at each photo's own size, through the runtime's Python API:
   coop Ŷ (the generator's mean over latent samples), Ỹ (after the energy's Langevin descent),
   epistemic uncertainty; QE-FPN; G(X) with h = 0 (torch; Table 2's baseline has no bundle);
   ``refine`` of the QE-FPN's and G(X)'s maps by the coop bundle's energy; the trivial
   references (all-zero map, centred Gaussian with σ = 0.3 of each side);
5. ``eval`` — ``sal-runtime eval``'s metrics for every map folder → ``<out>/results.json``;
6. ``picture`` — ``<out>/examples.png``: 6 test photos, labelled columns photo | ground truth | Ŷ |
   Ỹ after the energy | epistemic uncertainty | QE-FPN.

The recipe (backbone, input size, epochs, augmentation) is the one chosen within the budget on a
held-out part of the train split (docs/data-and-eval.md, "Real photographs"); ``--recipe smoke``
trains for a few steps only (tests).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np

from salkit.kernels.atomic import atomic_write_bytes, atomic_write_text
from salkit.kernels.errors import SalkitError, report_user_errors

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling module
from real_report import markdown, publish_readme  # noqa: E402

BIN = Path(sys.executable).parent
EPISTEMIC_SCALE = math.log(2.0)  # entropy maps (nats) are shown divided by their maximum, ln 2
PICTURE_COLUMNS = ["photo", "ground truth", "Ŷ (generator)", "Ỹ after the energy", "epistemic uncertainty", "QE-FPN"]

# One training job per model: the trainer's own options; "steps" are counted from epochs × batches.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "default": {
        "coop": {"cli": "train-coop", "epochs": 20, "batch": 8,
                 "args": ["--preset", "tiny", "--size", "128", "--crop", "0.75"]},
        "gx": {"cli": "train-coop", "epochs": 20, "batch": 8,
               "args": ["--preset", "tiny", "--size", "128", "--crop", "0.75", "--generator-only", "deterministic"]},
        "qefpn": {"cli": "train-qefpn", "epochs": 10, "batch": 8,
                  "args": ["--preset", "tiny", "--size", "128", "--crop", "0.75"]},
    },
    "smoke": {
        "pretrain": {"cli": "train-coop", "epochs": 1, "batch": 4, "synth": {"n": 8, "size": 32, "seed": 0},
                     "args": ["--preset", "tiny", "--size", "32", "--generator-only", "deterministic"]},
        "coop": {"cli": "train-coop", "epochs": 1, "batch": 2, "init": "pretrain", "args": ["--preset", "tiny", "--size", "32"]},
        "gx": {"cli": "train-coop", "epochs": 1, "batch": 2, "init": "pretrain",
               "args": ["--preset", "tiny", "--size", "32", "--generator-only", "deterministic"]},
        "qefpn": {"cli": "train-qefpn", "epochs": 1, "batch": 2, "args": ["--preset", "tiny", "--size", "32"]},
    },
}
MAP_FOLDERS = {  # results.json row → maps/<folder>
    "coop Ŷ": "coop_yhat", "coop Ỹ": "coop_ytilde", "G(X)": "gx", "QE-FPN": "qefpn",
    "QE-FPN + refine": "qefpn_refined", "G(X) + refine": "gx_refined",
    "all-zero map": "zero", "centred Gaussian": "gaussian",
}


class Run:
    """The output folder, its stage markers, and the progress lines."""

    def __init__(self, out: Path, data: Path, train_split: str, test_split: str, recipe: str, lanes: int,
                 checkpoint_every: int, echo: Callable[[str], None]) -> None:
        self.out, self.data, self.train_split, self.test_split = out, data, train_split, test_split
        self.recipe, self.lanes, self.checkpoint_every, self.echo = recipe, lanes, checkpoint_every, echo

    def stage(self, index: int, name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        marker = self.out / "stages" / f"{name}.json"
        if marker.is_file():
            self.echo(f"[{index}/6] {name}: done earlier ({marker})")
            return json.loads(marker.read_text())
        self.echo(f"[{index}/6] {name} …")
        started, cpu = time.time(), _cpu_seconds()
        info = work()
        info.update(wall_s=round(time.time() - started, 1), cpu_s=round(_cpu_seconds() - cpu, 1))
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
def stage_data(run: Run) -> dict[str, Any]:
    from salkit.base.layout import split_samples
    from salkit.train.data.scribbles import link_split

    train = split_samples(run.data, run.train_split)  # SalkitError names the file and the problem
    count = link_split(run.data, run.test_split, run.out / "test", force=True)
    return {"train_ids": len(train), "test_ids": count}


# ---------------------------------------------------------------- 2. train
def _command(run: Run, name: str, job: dict[str, Any], threads: int) -> list[str]:
    out = run.out / name
    data = ["--data", str(run.out / "synth")] if job.get("synth") else ["--data", str(run.data), "--split", run.train_split]
    cmd = [str(BIN / job["cli"]), *data, "--out", str(out), "--epochs", str(job["epochs"]), "--batch-size",
           str(job["batch"]), "--checkpoint-every", str(run.checkpoint_every), "--grid-every", "0", *job["args"]]
    cmd += ["--no-progress", *(["--threads", str(threads)] if job["cli"] == "train-coop" else [])]
    if (out / "last.pt").is_file():
        cmd += ["--resume", str(out / "last.pt")]  # the checkpoint holds the weights: no --init again
    else:
        cmd += ["--force"] if out.exists() else []
        cmd += ["--init", str(run.out / job["init"] / "last.pt")] if job.get("init") else []
    return cmd


def _last_step(out: Path) -> int:
    try:
        lines = (out / "log.csv").read_text().strip().splitlines()
        return int(lines[-1].split(",", 1)[0]) if len(lines) > 1 else 0
    except (OSError, ValueError):
        return 0


def _synthetic_scenes(run: Run, spec: dict[str, int]) -> None:
    """The procedural scenes a ``pretrain`` job trains on, made once (``sal-data synth``)."""
    from salkit.train.data.synth import write_dataset

    info = run.out / "synth" / "synth.json"
    if info.is_file() and all(json.loads(info.read_text()).get(k) == v for k, v in spec.items()):
        return
    run.echo(f"      procedural scenes for pre-training: {spec['n']} at {spec['size']}² → {run.out / 'synth'}")
    write_dataset(run.out / "synth", n=spec["n"], size=spec["size"], seed=spec["seed"], force=True)


def _run_lanes(run: Run, lanes: list[list[str]], jobs: dict[str, Any], totals: dict[str, int]) -> dict[str, Any]:
    """Each lane's jobs one after another, the lanes side by side; one progress line for all."""
    threads = max(1, (os.cpu_count() or 1) // max(1, len(lanes)))
    failures: list[str] = []
    procs: dict[str, subprocess.Popen] = {}

    def lane(queue: list[str]) -> None:
        for name in queue:
            if failures:
                return
            log = run.out / "logs" / f"{name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            with open(log, "a") as handle:
                procs[name] = subprocess.Popen(_command(run, name, jobs[name], threads), stdout=handle,
                                               stderr=subprocess.STDOUT, env=env)
                _, status, usage = os.wait4(procs[name].pid, 0)  # the job's own CPU time, not the lanes' sum
                procs[name].returncode = code = os.waitstatus_to_exitcode(status)
            if code != 0:
                tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
                failures.append(f"training {name} failed (exit {code}): {tail[0]} — see {log}")
                return
            cpu = round(usage.ru_utime + usage.ru_stime, 1)
            atomic_write_text(run.out / name / "finished", json.dumps({"cpu_s": cpu}) + "\n")

    workers = [threading.Thread(target=lane, args=(queue,), daemon=True) for queue in lanes if queue]
    for worker in workers:
        worker.start()
    shown = ""
    try:
        while any(worker.is_alive() for worker in workers):
            for _ in range(30):  # a progress line at most every 30 s, and only when a step count moved
                time.sleep(1.0)
                if not any(worker.is_alive() for worker in workers):
                    break
            line = " | ".join(f"{n} {_last_step(run.out / n)}/{totals[n]}" for n in jobs)
            if line != shown:
                run.echo(f"      steps: {line}  ({time.strftime('%H:%M:%S')})")
                shown = line
    except KeyboardInterrupt:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()  # the trainers keep their last checkpoint; the next call resumes
        raise
    if failures:
        raise SalkitError("; ".join(failures))
    return {"threads": threads}


def stage_train(run: Run, train_ids: int) -> dict[str, Any]:
    jobs = RECIPES[run.recipe]
    spec = jobs.get("pretrain", {}).get("synth")
    totals = {n: job["epochs"] * math.ceil((spec["n"] if job.get("synth") else train_ids) / job["batch"])
              for n, job in jobs.items()}
    unfinished = lambda names: [n for n in names if not (run.out / n / "finished").is_file()]  # noqa: E731
    if spec and unfinished(["pretrain"]):
        _synthetic_scenes(run, spec)
        _run_lanes(run, [["pretrain"]], jobs, totals)  # coop and G(X) start from its weights
    order = ["coop", "gx", "qefpn"]  # lane i runs order[i::lanes]: the long coop training has a lane of its own
    info = _run_lanes(run, [unfinished(order[i :: run.lanes]) for i in range(run.lanes)], jobs, totals)
    cpu = {n: json.loads((run.out / n / "finished").read_text() or "{}").get("cpu_s") for n in jobs}
    lane_cpu = [round(sum(cpu[n] or 0.0 for n in order[i :: run.lanes]), 1) for i in range(run.lanes)]
    if spec:
        lane_cpu = [round(c + (cpu.get("pretrain") or 0.0), 1) for c in lane_cpu]  # it runs before the lanes
    return {"steps": totals, "recipe": jobs, "lanes": run.lanes, "threads": info["threads"],
            "job_cpu_s": cpu, "lane_cpu_s": lane_cpu}


# ---------------------------------------------------------------- 3. export
def stage_export(run: Run) -> dict[str, Any]:
    for name in ("coop", "qefpn"):
        cmd = [str(BIN / "export-trt"), "--ckpt", str(run.out / name / "last.pt"), "--out", str(run.out / f"bundle_{name}"),
               "--force"]
        with open(run.out / "logs" / f"export_{name}.log", "w") as handle:
            if subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT).returncode != 0:
                raise SalkitError(f"export of {name} failed — see {run.out / 'logs' / f'export_{name}.log'}")
    return {"bundles": [str(run.out / "bundle_coop"), str(run.out / "bundle_qefpn")]}


# ---------------------------------------------------------------- 4. maps
def centred_gaussian(height: int, width: int, sigma: float = 0.3) -> np.ndarray:
    """exp(−½((y − cy)²/(σH)² + (x − cx)²/(σW)²)) at the photo's own size; 1 at the centre."""
    y = (np.arange(height) + 0.5 - height / 2) / (sigma * height)
    x = (np.arange(width) + 0.5 - width / 2) / (sigma * width)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


def _gx_maps(run: Run, photos: list[np.ndarray]) -> list[np.ndarray]:
    """G(X) with h = 0 at the model's size (torch), resized back to each photo's size."""
    import torch

    from salkit.base.images import preprocess, resize_map
    from salkit.train.coop.predictor import load_coop

    model = load_coop(run.out / "gx" / "last.pt")
    maps = []
    for photo in photos:
        x = torch.from_numpy(preprocess([photo], model.image_size))
        with torch.no_grad():
            logits = model.generator(x, torch.zeros(1, model.generator.latent_dim))
        maps.append(np.clip(resize_map(torch.sigmoid(logits)[0, 0].numpy(), photo.shape[:2]), 0.0, 1.0))
    return maps


def stage_maps(run: Run) -> dict[str, Any]:
    from salkit.base.images import decode_image, list_images, resize_map, save_png_map
    from salkit.runtime.inputs import to_batch
    from salkit.runtime.predictor import Predictor

    paths = list_images(run.out / "test" / "img")
    photos = [decode_image(p) for p in paths]
    folders = {key: run.out / "maps" / key for key in [*MAP_FOLDERS.values(), "coop_epistemic"]}
    write = lambda key, i, m: save_png_map(folders[key] / f"{paths[i].stem}.png", np.clip(m, 0.0, 1.0))  # noqa: E731
    gx = _gx_maps(run, photos)
    with Predictor.from_bundle(run.out / "bundle_coop", backend="ort-cpu") as coop, \
            Predictor.from_bundle(run.out / "bundle_qefpn", backend="ort-cpu") as qefpn:
        size = coop.manifest.input_size
        for i, (photo, path) in enumerate(zip(photos, paths)):
            x = to_batch([photo], size, coop.manifest.mean, coop.manifest.std).x
            first = coop.predict_tensor(x, steps=0, seed=i)  # Ŷ: the mean over latent samples, no descent
            y_tilde = coop.refine_tensor(x, first["saliency"])  # Ỹ: the bundle's K Langevin steps on U
            back = lambda m: resize_map(m[0, 0], photo.shape[:2])  # noqa: E731 — (1,1,S,S) → (H, W)
            write("coop_yhat", i, back(first["saliency"]))
            write("coop_ytilde", i, back(y_tilde))
            write("coop_epistemic", i, back(first["epistemic"]) / EPISTEMIC_SCALE)
            q = qefpn.predict(photo, seed=i).saliency[0]
            write("qefpn", i, q)
            write("qefpn_refined", i, coop.refine(photo, q)[0])
            write("gx", i, gx[i])
            write("gx_refined", i, coop.refine(photo, gx[i])[0])
            write("zero", i, np.zeros(photo.shape[:2], np.float32))
            write("gaussian", i, centred_gaussian(*photo.shape[:2]))
            if i % 20 == 0:
                run.echo(f"      maps: {i + 1}/{len(paths)} photos")
    return {"photos": len(paths), "folders": {k: str(v) for k, v in folders.items()}}


# ---------------------------------------------------------------- 5. eval
def stage_eval(run: Run, timings: dict[str, Any]) -> dict[str, Any]:
    from salkit.base.metrics import SCALARS, evaluate_dirs

    rows = {}
    for row, folder in MAP_FOLDERS.items():
        metrics = evaluate_dirs(run.out / "maps" / folder, run.out / "test" / "gt")
        rows[row] = {key: round(float(metrics[key]), 4) for key in SCALARS}
    refine_delta = {
        base: {key: round(rows[f"{base} + refine"][key] - rows[base][key], 4) for key in SCALARS}
        for base in ("QE-FPN", "G(X)")
    }
    results = {
        "dataset": str(run.data), "train_split": run.train_split, "test_split": run.test_split,
        "n_test": int(evaluate_dirs(run.out / "maps" / "zero", run.out / "test" / "gt")["n_images"]),
        "protocol": "maps at each photo's own size; gt binarised at > 128; per-image min-max scaling (sal-runtime eval)",
        "rows": rows, "refine_delta": refine_delta, "recipe": run.recipe,
        "train": timings.get("train", {}).get("recipe"),
        "timing": {"stages_wall_s": {k: v.get("wall_s") for k, v in timings.items()},
                   "stages_cpu_s": {k: v.get("cpu_s") for k, v in timings.items()},
                   "train_job_cpu_s": timings.get("train", {}).get("job_cpu_s"),
                   # What the stages take on an otherwise idle machine, from CPU seconds: the trainings'
                   # busiest lane plus every other stage's whole CPU time (an upper bound for those).
                   "cpu_bound_wall_min": round((max(timings.get("train", {}).get("lane_cpu_s") or [0.0])
                                                + sum(float(v.get("cpu_s") or 0.0) for k, v in timings.items()
                                                      if k != "train")) / 60.0, 1),
                   "cpu": cpu_model(), "cores": os.cpu_count()},
    }
    atomic_write_text(run.out / "results.json", json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(run.out / "results.md", markdown(results))
    return {"results": str(run.out / "results.json")}


# ---------------------------------------------------------------- 6. picture
def stage_picture(run: Run, count: int = 6) -> dict[str, Any]:
    from salkit.runtime.cli_common import write_grid
    from salkit.base.images import decode_gray, decode_image, list_images, read_mask

    paths = list_images(run.out / "test" / "img")
    shown = min(count, len(paths))
    chosen = [paths[round(i * (len(paths) - 1) / max(1, shown - 1))] for i in range(shown)]  # spread evenly, by name
    rows = []
    for path in chosen:
        gt = decode_gray(run.out / "test" / "gt" / f"{path.stem}.png") > 128
        maps = [read_mask(run.out / "maps" / key / f"{path.stem}.png") for key in ("coop_yhat", "coop_ytilde", "coop_epistemic", "qefpn")]
        rows.append([decode_image(path), gt.astype(np.float32), *maps])
    write_grid(run.out / "examples.png", rows, side=160, labels=PICTURE_COLUMNS)
    return {"picture": str(run.out / "examples.png"), "photos": [p.name for p in chosen]}


def real(run: Run) -> dict[str, Any]:
    if run.recipe not in RECIPES:
        raise SalkitError(f"unknown recipe {run.recipe!r}; choose from {', '.join(RECIPES)}")
    if not run.data.is_dir():
        raise SalkitError(f"--data {run.data} does not exist (the PASCAL-S photos: see ../shared/data/README.md)")
    started = time.time()
    timings: dict[str, Any] = {}
    timings["data"] = run.stage(1, "data", lambda: stage_data(run))
    timings["train"] = run.stage(2, "train", lambda: stage_train(run, timings["data"]["train_ids"]))
    timings["export"] = run.stage(3, "export", lambda: stage_export(run))
    timings["maps"] = run.stage(4, "maps", lambda: stage_maps(run))
    (run.out / "stages" / "eval.json").unlink(missing_ok=True)  # cheap: always re-read the maps and timings
    timings["eval"] = run.stage(5, "eval", lambda: stage_eval(run, dict(timings)))
    timings["picture"] = run.stage(6, "picture", lambda: stage_picture(run))
    results = json.loads((run.out / "results.json").read_text())
    total = sum(float(t.get("wall_s", 0.0)) for t in timings.values())
    run.echo(f"results {run.out / 'results.json'} (stages {total / 60:.1f} min, this call {(time.time() - started) / 60:.1f} min)")
    for row, metrics in results["rows"].items():
        run.echo(f"  {row:<18} MAE {metrics['mae']:.4f}  S {metrics['s_measure']:.4f}  max F {metrics['max_f']:.4f}")
    return results


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", default="runs/real", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", default="../shared/data/pascal-s", show_default=True, type=click.Path(path_type=Path),
              help="PASCAL-S layout: img/, gt/, train.txt, test.txt.")
@click.option("--train-split", default="train", show_default=True, help="Split name (DATA/N.txt) or file to train on.")
@click.option("--test-split", default="test", show_default=True, help="Split name or file to judge on.")
@click.option("--recipe", default="default", show_default=True, type=click.Choice(sorted(RECIPES)))
@click.option("--lanes", default=2, show_default=True, type=click.IntRange(1, 3), help="Trainings run side by side.")
@click.option("--checkpoint-every", default=20, show_default=True, type=click.IntRange(1), help="Steps between checkpoints.")
@click.option("--readme", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also rewrite this README's 'Real photographs' section (picture copied to docs/img/real_examples.png).")
@report_user_errors
def main(out: Path, data: Path, train_split: str, test_split: str, recipe: str, lanes: int, checkpoint_every: int,
         readme: Path | None) -> None:
    """Train, export and evaluate on real photographs; resumes where a previous call stopped."""
    results = real(Run(out, data, train_split, test_split, recipe, lanes, checkpoint_every, lambda m: click.echo(m, err=True)))
    if readme is not None:
        picture = readme.resolve().parent / "docs" / "img" / "real_examples.png"
        atomic_write_bytes(picture, (out / "examples.png").read_bytes())
        publish_readme(readme, markdown(results, picture="docs/img/real_examples.png"))
        click.echo(f"README section and {picture} written", err=True)


if __name__ == "__main__":
    main()
