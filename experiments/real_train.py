"""`make real`'s training stage: the recipes, each job's trainer command, and the lanes that run them.

A recipe names one job per model, each with the trainer's own options. A job may start from
another job's weights (``init``: a pre-training, or the trained coop model for an energy-only
fine-tune; ``trunk``: only that job's trained backbone, for a model of another family) and then
runs once that job has finished. ``--lanes`` workers take the first ready job
in the recipe's order (longest first), so the long cooperative training never waits behind the
short ones. A finished job leaves ``<job>/finished`` (its own CPU seconds); an interrupted one
resumes from ``<job>/last.pt`` (at most ``--checkpoint-every`` steps lost).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from salkit.base.atomic import atomic_write_text
from salkit.base.errors import SalkitError

BIN = Path(sys.executable).parent
TINY_128 = ["--preset", "tiny", "--size", "128", "--crop", "0.75"]

# Job → trainer options; "epochs" × batches gives the step count shown in the progress line.
# "data": "scribbles" trains on the scribbles the data stage derived from the train split's masks.
# The order is the order the lanes take them in (longest first).
LITE_224 = ["--preset", "lite", "--size", "224", "--crop", "0.75"]
# Real photographs (DUTS-TR → PASCAL-S) from the ImageNet EfficientNet-Lite0 backbone. "images": the job trains
# on N ids of the data stage's shuffle of the train set (held-out ids excluded), the first N or those after the
# first "skip", for "epochs" passes. K = 3 Langevin steps (the authors' code; the paper says 5).
# The recipe trials (experiments/real_trials.py; 200 held-out DUTS-TR photos, S-measure) chose:
# - a warm start: coop from G(X) (2400 photos) + 600 more photos scored S 0.896 for 12.3 CPU minutes in all,
#   coop from ImageNet alone 0.843 for 11.4. coop and G(X,h) start from G(X)'s weights (its weights on h
#   zeroed, so G(X,h) starts as G(X)) and continue on photos G(X) has not seen. The scribble model starts
#   from ImageNet: it may not see a full mask;
# - 224² (G(X), 2400 photos: S 0.891) over 192² with as many more photos as the same CPU buys (3300: 0.881);
# - the backbone at lr × 0.2 (800 photos: S 0.855 vs 0.857 at × 1, max F 0.881 vs 0.875: no difference);
# - a soft-IoU term beside the BCE of the generator's full-mask supervision (G(X), 2400 photos: S 0.898 /
#   MAE 0.060 with it, 0.891 / 0.077 without);
# - the rate constant over the run: decaying linearly to 0 at the last step scored S 0.886 against 0.898;
# - σ = 1 in the coop fine-tune (the generator's pull towards the energy-revised maps weighted 1/(2σ²) = 0.5, not
#   5.6): +600 photos from G(X) + IoU 2400 scored S 0.8995 / MAE 0.0548 against 0.9003 / 0.0577 at σ = 0.3;
# - QE-FPN from G(X)'s trained trunk (trunk: --backbone-weights): 800 photos scored S 0.875 / MAE 0.080 against
#   0.866 / 0.090 from ImageNet (experiments/real_trials_qefpn.py);
# - no noise in the coop fine-tune's Langevin chains (--no-langevin-noise): from make real's G(X) on the same 1200
#   photos, Ŷ scored S 0.905 / MAE 0.056 against 0.902 / 0.063 with it (AMD EPYC run). The energy's gradient barely
#   moves Y here, so with noise the generator's regression is on the noise alone (its loss stayed at 0.24); its
#   Ŷ equalled the one at h = 0 to 4 decimals, so the decoder does not use h to explain it. Zero-mean, but it is
#   what Adam's step sizes adapt to; the authors' code drops the noise for the last third of training.
# - the fine-tunes from G(X) (coop, and G(X,h) alone alike) at lr × 0.2 (--lr-gen 1e-4): continuing G(X)'s own
#   training at its rate raised its held-out MAE (0.050 → 0.056 after 1200 photos, S 0.904 both), and so did
#   coop (0.0555, S 0.905); at lr × 0.2 coop scored S 0.906 / MAE 0.0525 (decaying the rate to 0 instead: the same);
# - the spare quarter of the hour (the AMD EPYC run ended at 44 of its 60 minutes) on more photos: G(X) on 8640
#   instead of 6000 (held-out S 0.855 / 0.898 / 0.904 after 800 / 2400 / 6000; 8640: 0.903, MAE 0.049 against
#   0.050). Not the scribble model as it was (without the coherence term, below): on 2500 photos instead of 1600
#   its training jumped at step 120 and it scored S 0.789 / MAE 0.161 against 0.829 / 0.114 (held out), 0.687
#   against 0.744 on PASCAL-S;
# - the scribble model's chains keep their noise: without it, 1600 photos scored S 0.722 / MAE 0.214 against
#   0.829 / 0.114 with it.
# - for the scribble model, the local coherence term (--coherence-weight 0.3: near pixels alike in colour agree)
#   at half the rate, on 2500 photos: S 0.848 / MAE 0.098 against 0.829 / 0.114 (1600 photos, neither). On 1600
#   photos the term alone gave 0.836 / 0.114 (at weight 1: 0.835; at 3 the map went flat, as did the edge-aware
#   smoothness term at 25 and 100); on 2500 at the full rate 0.839 / 0.102. With it the 2500-photo run did not
#   jump as the one without it did.
# - coop for two passes over its 1200 photos (the pool has only 1413 that G(X) has not seen): held-out S 0.9081 /
#   MAE 0.0507 after one pass (make real's coop of the last run, reproduced), 0.9165 / 0.0456 after two, 0.9152 /
#   0.0476 after three. Not the scribble model on 3500 photos: 0.829 / 0.110 against 0.848 / 0.098 on 2500; nor its
#   rate decaying linearly to 0 (2500 photos: 0.830 / 0.109).
# - the energy fine-tune stays at one pass of 160 photos: two or four passes (200 photos after coop's, 50 / 100
#   optimiser steps) learnt to move maps but traded S for MAE (after 1 step: MAE 0.0456 → 0.0444, S 0.9165 → 0.9149;
#   after 6: 0.0429 / 0.909), which the export's step gate refuses.
# - no second scribble round on the model's own confident maps (salkit.train.data.pseudo; 1000 of its photos, G(X, 0)
#   ≤ 0.3 / ≥ 0.7 as labels beside the strokes): S 0.850 / MAE 0.094 against 0.848 / 0.098, for 10 more CPU minutes.
# Measured at 1 thread, two lanes, channels_last, on an Intel Xeon (Ice Lake): G(X) 2400 photos in 8.1 CPU
# minutes, coop 600 in 4.2; on an AMD EPYC (Zen 4): G(X) 6000 in 14.4, scribble 1600 in 13.2 (2500 with the
# coherence term: 19.6), coop 1200 in 7.2.
IOU = ["--iou-weight", "1"]
FINE_TUNE = ["--lr-gen", "1e-4"]
SCRIBBLE_REGIONS = ["--coherence-weight", "0.3", "--lr-gen", "2.5e-4"]
LITE_RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "hour": {
        "gx": {"cli": "train-coop", "epochs": 1, "batch": 8, "images": 8640, "args": [*LITE_224, *IOU, "--generator-only", "deterministic"]},
        "scribble": {"cli": "train-coop", "epochs": 1, "batch": 8, "images": 2500, "data": "scribbles",
                     "args": [*LITE_224, "--langevin-steps", "3", "--scribble", *SCRIBBLE_REGIONS]},
        "coop": {"cli": "train-coop", "epochs": 2, "batch": 8, "images": 1200, "skip": 8640, "init": "gx",
                 "args": [*LITE_224, *IOU, *FINE_TUNE, "--langevin-steps", "3", "--sigma", "1", "--no-langevin-noise"]},
        # 250 unrolled warm-up steps, then 50 with the Broyden solve and implicit backward (1 img/s at 2 threads).
        "qefpn": {"cli": "train-qefpn", "epochs": 1, "batch": 8, "images": 2400, "trunk": "gx",
                  "args": [*LITE_224, "--solver-warmup", "250"]},
        "energy": {"cli": "train-coop", "epochs": 1, "batch": 8, "images": 160, "skip": 9840, "init": "coop",
                   "args": [*LITE_224, "--langevin-steps", "3", "--energy-only", "--descent-iou", "1"]},
        "gxh": {"cli": "train-coop", "epochs": 1, "batch": 8, "images": 1200, "skip": 8640, "init": "gx",
                "args": [*LITE_224, *IOU, *FINE_TUNE, "--langevin-steps", "3", "--generator-only", "latent"]},
    },
}
# Several hours (resumable), the hour recipe's structure at 256² on the whole pool (DUTS-TR less the held-out
# ids): G(X) for two epochs; coop and G(X,h) from it for one more over the same photos, QE-FPN from its trunk for
# two; the scribble model from ImageNet for two. Roughly 13 hours of CPU at the hour recipe's rates × (256/224)², 6.5 on 2 idle cores
# (an estimate from the rates, not a measured run).
# Every job keeps its weights every 314 steps (2512 photos, a quarter of the pool): the curve real_curve.py judges.
LITE_256 = ["--preset", "lite", "--size", "256", "--crop", "0.75", "--keep-every", "314"]
POOL = 10053  # DUTS-TR's 10,553 less the 500 held out
LITE_RECIPES["full"] = {
    "gx": {"cli": "train-coop", "epochs": 2, "batch": 8, "images": POOL, "args": [*LITE_256, *IOU, "--generator-only", "deterministic"]},
    "scribble": {"cli": "train-coop", "epochs": 2, "batch": 8, "images": POOL, "data": "scribbles",
                 "args": [*LITE_256, "--langevin-steps", "3", "--scribble", *SCRIBBLE_REGIONS]},
    "coop": {"cli": "train-coop", "epochs": 1, "batch": 8, "images": POOL, "init": "gx",
             "args": [*LITE_256, *IOU, *FINE_TUNE, "--langevin-steps", "3", "--sigma", "1", "--no-langevin-noise"]},
    "qefpn": {"cli": "train-qefpn", "epochs": 2, "batch": 8, "images": POOL, "trunk": "gx", "args": LITE_256},
    "energy": {"cli": "train-coop", "epochs": 1, "batch": 8, "images": 1000, "init": "coop",
               "args": [*LITE_256, "--langevin-steps", "3", "--energy-only", "--descent-iou", "1"]},
    "gxh": {"cli": "train-coop", "epochs": 1, "batch": 8, "images": POOL, "init": "gx",
            "args": [*LITE_256, *IOU, *FINE_TUNE, "--langevin-steps", "3", "--generator-only", "latent"]},
}

# The recipes of the tiny backbone trained from scratch on PASCAL-S's own train split (the earlier records):
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # Measured at 1 thread on the AMD EPYC (CPU s per step of 8 at 128²): coop 1.22, scribble 2.03, G(X) 0.27,
    # G(X,h) 0.8–1.0, energy-only 2.1, QE-FPN 0.62. "scratch" was make real's default before the ImageNet backbones
    # (about 87 CPU minutes of training in two lanes of about 45, plus about 7 minutes of data, export, maps
    # and evaluation).
    # "short" is the recipe that fits within the hour when other jobs share the machine (about 20 CPU
    # minutes of training). Longer training helps (experiments/real_trials.py: G(X) on the held-out part of the train split,
    # S 0.600 / 0.628 / 0.649 after 6 / 12 / 24 epochs).
    # In this order the lanes run (pre-training →) coop → energy beside scribble → G(X,h) → G(X) → QE-FPN.
    "short": {
        "coop": {"cli": "train-coop", "epochs": 6, "batch": 8, "args": TINY_128},
        "scribble": {"cli": "train-coop", "epochs": 3, "batch": 8, "data": "scribbles", "args": [*TINY_128, "--scribble"]},
        # The energy alone fine-tuned to refine by its K-step descent, generator frozen (docs/coop.md).
        "energy": {"cli": "train-coop", "epochs": 1, "batch": 8, "init": "coop", "args": [*TINY_128, "--energy-only"]},
        "gx": {"cli": "train-coop", "epochs": 6, "batch": 8, "args": [*TINY_128, "--generator-only", "deterministic"]},
        "qefpn": {"cli": "train-qefpn", "epochs": 4, "batch": 8, "args": TINY_128},
    },
    "scratch": {
        # Procedural scenes first (S 0.628 → 0.639 for G(X) after 12 epochs, for 1.1 CPU minutes); G(X) starts
        # from it. coop does not: started from it, its first steps (h ~ N(0, I) through a decoder trained with
        # h = 0) gave CE 38 and regression 5e5, and after 20 epochs Ŷ scored S 0.447 on the test split against
        # 0.580 for 6 epochs from scratch (docs/data-and-eval.md).
        "pretrain": {"cli": "train-coop", "epochs": 3, "batch": 8, "synth": {"n": 1000, "size": 128, "seed": 0},
                     "args": [*TINY_128, "--generator-only", "deterministic"]},
        "coop": {"cli": "train-coop", "epochs": 20, "batch": 8, "args": TINY_128},
        "scribble": {"cli": "train-coop", "epochs": 4, "batch": 8, "data": "scribbles", "args": [*TINY_128, "--scribble"]},
        "energy": {"cli": "train-coop", "epochs": 2, "batch": 8, "init": "coop", "args": [*TINY_128, "--energy-only"]},
        # G(X,h) from scratch: started from the deterministic pre-training (h = 0 throughout, so the decoder's
        # response to h is untrained), its first latent chain diverged (regression 8e12 at step 1).
        "gxh": {"cli": "train-coop", "epochs": 12, "batch": 8, "args": [*TINY_128, "--generator-only", "latent"]},
        "gx": {"cli": "train-coop", "epochs": 20, "batch": 8, "init": "pretrain",
               "args": [*TINY_128, "--generator-only", "deterministic"]},
        "qefpn": {"cli": "train-qefpn", "epochs": 10, "batch": 8, "args": TINY_128},
    },
    "smoke": {
        "pretrain": {"cli": "train-coop", "epochs": 1, "batch": 4, "synth": {"n": 8, "size": 32, "seed": 0},
                     "args": ["--preset", "tiny", "--size", "32", "--generator-only", "deterministic"]},
        "coop": {"cli": "train-coop", "epochs": 1, "batch": 2, "init": "pretrain", "args": ["--preset", "tiny", "--size", "32"]},
        "energy": {"cli": "train-coop", "epochs": 1, "batch": 2, "init": "coop",
                   "args": ["--preset", "tiny", "--size", "32", "--energy-only"]},
        "scribble": {"cli": "train-coop", "epochs": 1, "batch": 2, "data": "scribbles",
                     "args": ["--preset", "tiny", "--size", "32", "--scribble"]},
        "gx": {"cli": "train-coop", "epochs": 1, "batch": 2, "init": "pretrain",
               "args": ["--preset", "tiny", "--size", "32", "--generator-only", "deterministic"]},
        "gxh": {"cli": "train-coop", "epochs": 1, "batch": 2, "args": ["--preset", "tiny", "--size", "32", "--generator-only", "latent"]},
        "qefpn": {"cli": "train-qefpn", "epochs": 1, "batch": 2, "args": ["--preset", "tiny", "--size", "32"]},
    },
}
RECIPES.update(LITE_RECIPES)


HELDOUT = 500  # training photos no job sees: the recipe trials' judge, and the export gates' photos
SCRIBBLE_SEED = 0  # the scribbles derived from the masks (make real's data stage and the recipe trials)
SPLIT_SEED = 0  # the held-out ids and each job's part stay the same across --seed and across the trials


def held_and_pool(ids: list[str]) -> tuple[list[str], list[str]]:
    """A fixed shuffle of the train ids: the first ``HELDOUT`` (a fifth of a small set) held out, the rest to train on."""
    import numpy as np

    order = [ids[i] for i in np.random.default_rng(SPLIT_SEED).permutation(len(ids))]
    held = order[: min(HELDOUT, len(ids) // 5)]
    return held, order[len(held):]


def waits_for(job: dict[str, Any]) -> list[str]:
    """The jobs whose weights ``job`` starts from (``init``, ``trunk``): it runs once they have finished."""
    return [job[key] for key in ("init", "trunk") if job.get(key)]


def coop_job(jobs: dict[str, Any]) -> str:
    """The job whose checkpoint is the cooperative model: the energy fine-tune when the recipe has one."""
    return "energy" if "energy" in jobs else "coop"


# Jobs a run may leave out (``make real``'s ``--skip``): no other job, bundle or test-split row needs them.
SKIPPABLE = ("gxh", "scribble")


def recipe_jobs(recipe: str, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """The recipe's jobs without the skipped ones, in the recipe's order."""
    jobs = RECIPES[recipe]
    for name in skip:
        if name not in SKIPPABLE:
            raise SalkitError(f"--skip {name}: only {', '.join(SKIPPABLE)} can be left out (the others give bundles or rows)")
    return {name: job for name, job in jobs.items() if name not in skip}


def command(out: Path, sources: dict[str, list[str]], name: str, job: dict[str, Any], threads: int,
            checkpoint_every: int, seed: int = 0) -> list[str]:
    """The trainer's command line for one job (``--resume`` when it has a checkpoint already).

    ``sources``: the ``--data``/``--split`` options of each data source ("train", "scribbles");
    ``seed``: the trainer's seed (weights, data order, noise); the procedural scenes keep theirs.
    """
    folder = out / name
    # A job with "images" trains on its own part of the train set (the data stage wrote it as a source).
    own = name if job.get("images") and name in sources and job.get("data") != "scribbles" else None
    source = ["--data", str(out / "synth")] if job.get("synth") else sources[own or job.get("data", "train")]
    cmd = [str(BIN / job["cli"]), *source, "--out", str(folder), "--epochs", str(job["epochs"]), "--batch-size",
           str(job["batch"]), "--checkpoint-every", str(checkpoint_every), "--grid-every", "0", "--seed", str(seed),
           *job["args"]]
    cmd += ["--no-progress", *(["--threads", str(threads)] if job["cli"] == "train-coop" else [])]
    if (folder / "last.pt").is_file():
        cmd += ["--resume", str(folder / "last.pt")]  # the checkpoint holds the weights: no --init again
    else:
        cmd += ["--force"] if folder.exists() else []
        cmd += ["--init", str(out / job["init"] / "last.pt")] if job.get("init") else []
        cmd += ["--backbone-weights", str(out / job["trunk"] / "last.pt")] if job.get("trunk") else []
    return cmd


def last_step(folder: Path) -> int:
    try:
        lines = (folder / "log.csv").read_text().strip().splitlines()
        return int(lines[-1].split(",", 1)[0]) if len(lines) > 1 else 0
    except (OSError, ValueError):
        return 0


def synthetic_scenes(out: Path, spec: dict[str, int], echo: Callable[[str], None]) -> None:
    """The procedural scenes a ``synth`` job trains on, made once (``sal-data synth``)."""
    from salkit.train.data.synth import write_dataset

    info = out / "synth" / "synth.json"
    if info.is_file() and all(json.loads(info.read_text()).get(k) == v for k, v in spec.items()):
        return
    echo(f"      procedural scenes for pre-training: {spec['n']} at {spec['size']}² → {out / 'synth'}")
    write_dataset(out / "synth", n=spec["n"], size=spec["size"], seed=spec["seed"], force=True)


class Lanes:
    """``lanes`` workers over the jobs; each takes the first unfinished job whose ``init`` and ``trunk`` jobs are done."""

    def __init__(self, out: Path, jobs: dict[str, Any], make_command: Callable[[str, int], list[str]], lanes: int,
                 totals: dict[str, int], checkpoint_every: int, echo: Callable[[str], None]) -> None:
        self.out, self.jobs, self.make_command, self.totals, self.echo = out, jobs, make_command, totals, echo
        self.checkpoint_every = checkpoint_every
        self.lanes = max(1, min(lanes, len(jobs)))
        self.threads = max(1, (os.cpu_count() or 1) // self.lanes)
        self.lock = threading.Lock()
        self.taken: set[str] = {n for n in jobs if self.finished(n)}
        self.failures: list[str] = []
        self.procs: dict[str, subprocess.Popen] = {}

    def finished(self, name: str) -> bool:
        return (self.out / name / "finished").is_file()

    def _next(self) -> str | None:
        """The next job to start; waits while every remaining job waits for a running one."""
        while True:
            with self.lock:
                if self.failures:
                    return None
                left = [n for n in self.jobs if n not in self.taken]
                if not left:
                    return None
                for name in left:
                    if all(self.finished(parent) for parent in waits_for(self.jobs[name])):
                        self.taken.add(name)
                        return name
            time.sleep(1.0)

    def _worker(self) -> None:
        while (name := self._next()) is not None:
            log = self.out / "logs" / f"{name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
            # Where this process starts: a resumed job repeats the steps after its last checkpoint.
            start = (last_step(self.out / name) // self.checkpoint_every) * self.checkpoint_every
            with open(log, "a") as handle:
                proc = subprocess.Popen(self.make_command(name, self.threads), stdout=handle, stderr=subprocess.STDOUT, env=env)
                self.procs[name] = proc
                _, status, usage = os.wait4(proc.pid, 0)  # the job's own CPU time, not the lanes' sum
                proc.returncode = code = os.waitstatus_to_exitcode(status)
            if code != 0:
                tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
                with self.lock:
                    self.failures.append(f"training {name} failed (exit {code}): {tail[0]} — see {log}")
                return
            cpu = round(usage.ru_utime + usage.ru_stime, 1)
            steps = self.totals[name] - start  # the steps this process ran: its CPU time per step
            atomic_write_text(self.out / name / "finished", json.dumps({"cpu_s": cpu, "steps_run": steps}) + "\n")

    def run(self) -> None:
        workers = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.lanes)]
        for worker in workers:
            worker.start()
        shown = ""
        try:
            while any(worker.is_alive() for worker in workers):
                for _ in range(30):  # a progress line at most every 30 s, and only when a step count moved
                    time.sleep(1.0)
                    if not any(worker.is_alive() for worker in workers):
                        break
                line = " | ".join(f"{n} {last_step(self.out / n)}/{self.totals[n]}" for n in self.jobs)
                if line != shown:
                    self.echo(f"      steps: {line}  ({time.strftime('%H:%M:%S')})")
                    shown = line
        except KeyboardInterrupt:
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.terminate()  # the trainers keep their last checkpoint; the next call resumes
            raise
        if self.failures:
            raise SalkitError("; ".join(self.failures))


def stage_train(out: Path, jobs: dict[str, dict[str, Any]], lanes: int, checkpoint_every: int,
                sources: dict[str, list[str]], sizes: dict[str, int], echo: Callable[[str], None],
                seed: int = 0) -> dict[str, Any]:
    """Run every job (``recipe_jobs``); ``sources`` and ``seed`` as in ``command``, ``sizes`` = the sources' sample counts."""
    for job in jobs.values():
        if job.get("synth"):
            synthetic_scenes(out, job["synth"], echo)
    def count(name: str, job: dict[str, Any]) -> int:
        if job.get("synth"):
            return job["synth"]["n"]
        if job.get("images") and name in sizes and job.get("data") != "scribbles":
            return sizes[name]
        return sizes[job.get("data", "train")]

    totals = {n: job["epochs"] * math.ceil(count(n, job) / job["batch"]) for n, job in jobs.items()}
    make = lambda name, threads: command(out, sources, name, jobs[name], threads, checkpoint_every, seed)
    runner = Lanes(out, jobs, make, lanes, totals, checkpoint_every, echo)
    runner.run()
    finished = {n: json.loads((out / n / "finished").read_text() or "{}") for n in jobs}
    cpu = {n: f.get("cpu_s") for n, f in finished.items()}
    per_step = {n: round(f["cpu_s"] / f["steps_run"], 3) if f.get("cpu_s") and f.get("steps_run") else None
                for n, f in finished.items()}
    # cpu_s is the last process's own: a job interrupted and resumed spent more (the killed part is not counted).
    return {"steps": totals, "recipe": jobs, "seed": seed, "lanes": runner.lanes, "threads": runner.threads, "job_cpu_s": cpu,
            "job_cpu_s_per_step": per_step,
            # What the stage needs on an idle machine at best: the jobs' CPU time spread over every core used.
            "cpu_bound_wall_s": round(sum(c or 0.0 for c in cpu.values()) / (runner.lanes * runner.threads), 1)}
