"""Choosing `make real`'s recipe: short cooperative trainings judged on a held-out part of the TRAIN split.

    python experiments/real_trials.py [--out runs/real_trials] [--data ../shared/data/pascal-s] [--parallel 2] [NAME …]

The test split is never read. The train split's ids are divided once: every 5th id in file order
is held out (``held.txt``), the others are trained on (``fit.txt``); both are files of ids in
``--out``, nothing is copied. Each trial trains ``train-coop`` with its options (1 thread each,
``--parallel`` side by side), then scores the held-out photos with the standard protocol (maps
resized back to each photo's size): Ŷ and Ỹ through the torch reference, with the runtime's seed
convention. A finished trial keeps ``<name>/trial.json`` and is not run again; ``trials.json``
and ``trials.md`` collect them. Wall time depends on what else runs; the CPU seconds are the
trial's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

from salkit.base.atomic import atomic_write_text
from salkit.base.errors import SalkitError, report_user_errors

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling modules
from real_maps import torch_mapper, torch_maps
from real_train import BIN, SCRIBBLE_SEED, held_and_pool, synthetic_scenes
from real_trials_table import TRIALS

HELD_JUDGED = 200
METRICS = ("mae", "s_measure", "max_f", "mean_e")


def held_out_split(data: Path, out: Path) -> tuple[Path, Path]:
    """fit.txt / held.txt in ``out``. A small train split (PASCAL-S's 680): every 5th id held out. A large one
    (DUTS-TR): make real's held-out ids (the first HELD_JUDGED judged) and its pool to train on."""
    from salkit.base.layout import read_split

    _, ids = read_split(data, "train")
    if len(ids) > 5 * 680:
        held, fit = held_and_pool(ids)
        held = held[:HELD_JUDGED]
    else:
        held = ids[::5]
        fit = [i for i in ids if i not in set(held)]
    out.mkdir(parents=True, exist_ok=True)
    for name, chosen in (("fit", fit), ("held", held)):
        atomic_write_text(out / f"{name}.txt", "\n".join(chosen) + "\n")
    return out / "fit.txt", out / "held.txt"


def _train(cmd: list[str], log: Path) -> float:
    """Run a trainer (1 thread); its own CPU seconds. A failure is one line naming the log."""
    with open(log, "a") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SalkitError(f"trial command failed: {' '.join(cmd[:1])} … — see {log}")
    return usage.ru_utime + usage.ru_stime


def _common(folder: Path, epochs: int) -> list[str]:
    resume = ["--resume", str(folder / "last.pt")] if (folder / "last.pt").is_file() else ["--force"]
    return ["--out", str(folder), "--epochs", str(epochs), "--batch-size", "8", "--checkpoint-every", "50",
            "--grid-every", "0", "--no-progress", "--threads", "1", *resume]


def _folder_name(name: str) -> str:
    return name.replace(" ", "_").replace("(", "").replace(")", "").replace("/", "-")


def scribble_source(data: Path, part: Path, out: Path) -> list[str]:
    """train-coop's --data/--split for scribbles derived from ``part``'s masks as make real derives them (same seed)."""
    from salkit.train.data.scribbles import write_scribbles

    if not (out / f"{part.stem}.txt").is_file():
        write_scribbles(data, part, out, seed=SCRIBBLE_SEED, force=True)
    return ["--data", str(out), "--split", str(out / f"{part.stem}.txt")]


def pseudo_source(folder: Path, part: Path, real_run: Path, pseudo: dict[str, Any]) -> list[str]:
    """train-coop's --data/--split for the strokes of ``folder/scribbles`` widened by make real's ``pseudo["from_real"]``
    model's Ỹ (``salkit.train.data.pseudo``); its labelling seconds are added to the trial's by the caller's log."""
    from salkit.train.data.pseudo import write_pseudo_scribbles

    out = folder / "pseudo"
    if not (out / f"{part.stem}.txt").exists():
        mapper = torch_mapper(real_checkpoint(real_run, pseudo["from_real"]), pseudo.get("kind", "coop"))
        key = "ytilde" if pseudo.get("kind", "coop") == "coop" else "yhat"
        started = time.process_time()
        stats = write_pseudo_scribbles(folder / "scribbles", part.stem, lambda photos: mapper(photos)[key], out,
                                       low=pseudo["low"], high=pseudo["high"], force=True)
        stats["label_cpu_s"] = round(time.process_time() - started, 1)
        atomic_write_text(folder / "pseudo_stats.json", json.dumps(stats, indent=1) + "\n")
    return ["--data", str(out), "--split", str(out / f"{part.stem}.txt")]


def real_checkpoint(real_run: Path, job: str) -> Path:
    """A finished job's checkpoint of a make real run; a missing one is one line."""
    if not (real_run / job / "finished").is_file():
        raise SalkitError(f"make real's {job} job has not finished in {real_run} (run make real first, or pass --real-run)")
    return real_run / job / "last.pt"


def run_trial(name: str, spec: dict[str, Any], data: Path, out: Path, fit: Path, held: Path,
              max_epochs: int | None = None, real_run: Path = Path("runs/real")) -> list[dict[str, Any]]:
    """Train the trial to each of its epoch counts in turn, judging the held-out photos after each."""
    folder = out / _folder_name(name)
    record = folder / "trial.json"
    if record.is_file():
        return json.loads(record.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    if spec.get("real_job"):  # no training: the make real job's checkpoint, its CPU seconds as it recorded them
        checkpoint = real_checkpoint(real_run, spec["real_job"])
        finished = json.loads((checkpoint.parent / "finished").read_text() or "{}")
        rows = [{"name": name, "epochs": 1, "train_cpu_s": round(float(finished.get("cpu_s", 0.0)), 1), "real_job": spec["real_job"],
                 **_judge(checkpoint, data, held, spec.get("judge", "coop"))}]
        atomic_write_text(record, json.dumps(rows, indent=1) + "\n")
        atomic_write_text(folder / "rows.json", json.dumps(rows, indent=1) + "\n")
        return rows
    cpu, init = 0.0, []
    if "pretrain" in spec:
        p = spec["pretrain"]
        synthetic_scenes(out, {"n": p["n"], "size": p["size"], "seed": p["seed"]}, lambda m: None)
        pre = folder / "pretrain"
        if not (pre / "finished").is_file():
            cpu += _train([str(BIN / "train-coop"), "--data", str(out / "synth"), *_common(pre, p["epochs"]), *spec["args"],
                           "--generator-only", "deterministic"], folder / "log.txt")
            atomic_write_text(pre / "finished", f"{cpu}\n")
        cpu = float((pre / "finished").read_text())
        init = ["--init", str(pre / "last.pt")]
    partial = folder / "rows.json"  # the epoch counts judged so far: an interrupted trial keeps them
    rows: list[dict[str, Any]] = json.loads(partial.read_text()) if partial.is_file() else []
    cpu = rows[-1]["train_cpu_s"] if rows else cpu
    if not rows and (folder / "cpu_before_restart").is_file():  # CPU seconds a stopped process had spent (its ps record)
        cpu += float((folder / "cpu_before_restart").read_text())
    for epochs in spec["epochs"][len(rows):]:
        if max_epochs is not None and epochs > max_epochs:
            return rows  # not finished: trial.json waits for the remaining epoch counts
        started = time.time()
        resume = (folder / "coop" / "last.pt").is_file()
        steps = ["--max-steps", str(spec["max_steps"])] if spec.get("max_steps") else []
        part = fit
        if spec.get("images"):  # the first N ids of the pool (after the first "skip")
            part = folder / "fit.txt"
            skip = spec.get("skip", 0)
            atomic_write_text(part, "\n".join(fit.read_text().split()[skip: skip + spec["images"]]) + "\n")
        source = ["--data", str(data), "--split", str(part)]
        if spec.get("data") == "scribbles":  # Algorithm 2: the scribbles make real derives, for these photos
            source = scribble_source(data, part, folder / "scribbles")
        if spec.get("pseudo"):  # a second round: the first model's confident maps widen the strokes
            source = pseudo_source(folder, part, real_run, spec["pseudo"])
        if spec.get("init_trial") and not resume:
            parent = out / _folder_name(spec["init_trial"]) / "coop" / "last.pt"
            if not (parent.parent.parent / "trial.json").is_file():
                raise SalkitError(f"trial {name!r} starts from trial {spec['init_trial']!r}: run that one first")
            init = ["--init", str(parent)]
        if spec.get("init_real") and not resume:
            init = ["--init", str(real_checkpoint(real_run, spec["init_real"]))]
        cpu += _train([str(BIN / "train-coop"), *source, *_common(folder / "coop", epochs),
                       *spec["args"], *steps, *([] if resume else init)], folder / "log.txt")
        row: dict[str, Any] = {"name": name, "epochs": epochs, "args": spec["args"], "pretrain": spec.get("pretrain"),
                               "train_cpu_s": round(cpu, 1), "last_wall_s": round(time.time() - started, 1)}
        if spec.get("max_steps"):
            row.update(steps=spec["max_steps"], cpu_s_per_step=round(cpu / spec["max_steps"], 2))
        else:
            row.update(_judge(folder / "coop" / "last.pt", data, held, spec.get("judge", "coop")))
        rows.append(row)
        atomic_write_text(partial, json.dumps(rows, indent=1) + "\n")
    atomic_write_text(record, json.dumps(rows, indent=1) + "\n")
    return rows


def _judge(checkpoint: Path, data: Path, held: Path, kind: str = "coop") -> dict[str, Any]:
    """The held-out photos' scores; ``kind`` as in ``torch_maps`` ("h0": G(X) only, no Ỹ)."""
    from salkit.base.images import decode_image
    from salkit.base.layout import read_mask_bool, split_samples
    from salkit.base.metrics import evaluate_arrays

    samples = split_samples(data, held)
    photos = [decode_image(s.image) for s in samples]
    gts = [read_mask_bool(s.mask) for s in samples if s.mask is not None]
    maps = torch_maps(checkpoint, photos, kind)
    result: dict[str, Any] = {"n_held": len(samples)}
    for key in ("yhat", "ytilde") if kind == "coop" else ("yhat",):
        metrics = evaluate_arrays(maps[key], gts)
        result[key] = {m: round(float(metrics[m]), 4) for m in METRICS}
    if kind == "descent":  # Ŷ after k = 1 … 2K noise-free energy steps: does the energy help strong maps?
        result["descent"] = []
        for k in sorted(int(key[1:]) for key in maps if key.startswith("k")):
            metrics = evaluate_arrays(maps[f"k{k}"], gts)
            result["descent"].append({"steps": k, **{m: round(float(metrics[m]), 4) for m in ("mae", "s_measure")}})
    return result


def trials_markdown(rows: list[dict[str, Any]]) -> str:
    from real_report import trials_table

    return "\n".join(trials_table(rows)) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("names", nargs=-1)
@click.option("--out", default="runs/real_trials", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", default="../shared/data/duts-tr", show_default=True, type=click.Path(path_type=Path),
              help="The training set whose held-out part judges (DUTS-TR; PASCAL-S's train split for the tiny trials).")
@click.option("--parallel", default=2, show_default=True, type=click.IntRange(1, 4), help="Trials side by side (1 thread each).")
@click.option("--max-epochs", type=click.IntRange(1), default=None, help="Stop each trial after the epoch counts up to this.")
@click.option("--real-run", default="runs/real", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="The make real run whose checkpoints the trials with real_job / init_real read.")
@report_user_errors
def main(names: tuple[str, ...], out: Path, data: Path, parallel: int, max_epochs: int | None, real_run: Path) -> None:
    """Run the named trials (default: all of TRIALS); results in OUT/trials.json and trials.md."""
    unknown = [n for n in names if n not in TRIALS]
    if unknown:
        raise SalkitError(f"unknown trial {unknown[0]!r}; choose from {', '.join(TRIALS)}")
    fit, held = held_out_split(data, out)

    def one(name: str) -> dict[str, Any]:
        click.echo(f"{time.strftime('%H:%M:%S')} trial {name} …", err=True)
        rows = run_trial(name, TRIALS[name], data, out, fit, held, max_epochs, real_run)
        scores = ", ".join(f"{r['epochs']} ep S Ŷ {r['yhat']['s_measure']:.3f}" for r in rows if "yhat" in r)
        click.echo(f"{time.strftime('%H:%M:%S')} trial {name}: {scores or 'timed only'}, CPU {rows[-1]['train_cpu_s'] / 60:.1f} min",
                   err=True)
        return rows

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, names or tuple(TRIALS)))
    # Every judged row, of finished trials and of the epoch counts an unfinished one has reached.
    done = [row for p in sorted(out.glob("*/rows.json")) for row in json.loads(p.read_text())]
    done.sort(key=lambda r: (list(TRIALS).index(r["name"]) if r["name"] in TRIALS else len(TRIALS), r["epochs"]))
    atomic_write_text(out / "trials.json", json.dumps(done, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(out / "trials.md", trials_markdown(done))
    click.echo(trials_markdown(done))


if __name__ == "__main__":
    main()
