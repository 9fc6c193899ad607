"""The training curve of a `make real` run that keeps its weights (``--keep-every``; ``--recipe full`` does).

    python experiments/real_curve.py [--run runs/real_full] [--reference runs/real] [--train-data ../shared/data/duts-tr]

Every kept checkpoint (``<run>/<job>/kept/step_N.pt``) and every finished job's last one is judged on the
recipe trials' held-out DUTS-TR photos (the first 200 of make real's held-out ids; never a test photo), as the
trials judge: G(X) at h = 0, G(X,h) by Ŷ, the coop models by Ỹ, the QE-FPN by its map. The ``--reference`` run's
finished jobs (the hour recipe) are judged the same way, one row each. A judged checkpoint keeps
``<run>/curve/<job>/step_N.json`` and is not judged again, so the script can run while the training does, and
again after it; ``<run>/curve/curve.json``, ``curve.md`` and ``curve.png`` collect the rows.

``--benchmark`` also judges each job's latest checkpoint on every benchmark photo the run's data stage
linked (``<run>/test``, ``<run>/splits/all.txt``): how far an unfinished run has got, in the published
protocol's numbers. Those rows report; nothing is chosen on them (the recipe is chosen on held-out photos).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from salkit.base.atomic import atomic_write_bytes, atomic_write_text
from salkit.base.errors import SalkitError, report_user_errors

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling modules
from real_trials import METRICS, _judge, held_out_split
from real_trials_qefpn import judge as judge_qefpn

# job → what the trials judge it by (real_maps.torch_maps' kind, or the QE-FPN's own map)
JUDGE = {"gx": "h0", "gxh": "latent", "coop": "coop", "energy": "coop", "scribble": "coop", "qefpn": "qefpn"}
ORDER = ("gx", "coop", "energy", "gxh", "scribble", "qefpn")


def score(checkpoint: Path, data: Path, held: Path, kind: str) -> dict[str, float]:
    """The held-out photos' metrics of one checkpoint (Ỹ for the coop models)."""
    if kind == "qefpn":
        return judge_qefpn(checkpoint, data, held)
    import torch

    torch.set_num_threads(1)
    judged = _judge(checkpoint, data, held, kind)
    return judged["ytilde" if kind == "coop" else "yhat"]


def checkpoints(run: Path, job: str) -> list[tuple[int, Path]]:
    """(step, file) of the job's kept checkpoints, and of its last one once the job has finished."""
    import torch

    found = [(int(p.stem.split("_")[1]), p) for p in sorted((run / job / "kept").glob("step_*.pt"))]
    last = run / job / "last.pt"
    if (run / job / "finished").is_file() and last.is_file():
        step = int(torch.load(last, map_location="cpu", weights_only=False)["step"])
        if step not in {s for s, _ in found}:
            found.append((step, last))
    return found


def judged(cache: Path, checkpoint: Path, data: Path, held: Path, kind: str, echo: Any) -> dict[str, Any]:
    """The checkpoint's metrics and its photos per step (batch × processes), judged once."""
    if cache.is_file():
        return json.loads(cache.read_text())
    import torch

    echo(f"judging {checkpoint} ({kind}) …")
    config = torch.load(checkpoint, map_location="cpu", weights_only=False)["train_config"]
    result = {**score(checkpoint, data, held, kind),
              "photos_per_step": int(config["cli"]["batch_size"]) * int(config.get("world_size", 1))}
    atomic_write_text(cache, json.dumps(result, indent=1) + "\n")
    return result


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| job | run | step | photos seen | S | MAE | max F | mean E |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in (r for r in rows if r["run"] != "benchmark"):
        m = r["metrics"]
        lines.append(f"| {r['job']} | {r['run']} | {r['step']} | {r['photos']} | {m['s_measure']:.4f} | {m['mae']:.4f} | "
                     f"{m['max_f']:.4f} | {m['mean_e']:.4f} |")
    bench = [r for r in rows if r["run"] == "benchmark"]
    if bench:
        lines += ["", f"Each job's latest checkpoint on all {bench[0]['n']} benchmark photos (reporting only):", "",
                  *lines[:2]]
        lines += [f"| {r['job']} | benchmark | {r['step']} | {r['photos']} | {r['metrics']['s_measure']:.4f} | "
                  f"{r['metrics']['mae']:.4f} | {r['metrics']['max_f']:.4f} | {r['metrics']['mean_e']:.4f} |" for r in bench]
    return "\n".join(lines) + "\n"


def benchmark_rows(run: Path, rows: list[dict[str, Any]], echo: Any) -> list[dict[str, Any]]:
    """Each curve job's latest checkpoint judged on every photo of ``<run>/test``."""
    split = run / "splits" / "all.txt"
    if not (run / "test").is_dir() or not split.is_file():
        raise SalkitError(f"--benchmark needs {run / 'test'} and {split} (make real's data stage with --test-split all)")
    n = sum(1 for line in split.read_text().splitlines() if line.strip())
    out = []
    for job in ORDER:
        latest = [r for r in rows if r["job"] == job and r["run"] == "curve"][-1:]
        for r in latest:
            cache = run / "curve" / "benchmark" / job / f"step_{r['step']:07d}.json"
            metrics = judged(cache, r["checkpoint"], run / "test", split, JUDGE[job], echo)
            out.append({**r, "run": "benchmark", "n": n, "metrics": {m: metrics[m] for m in METRICS}})
    return out


def plot(rows: list[dict[str, Any]]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for index, job in enumerate(ORDER):
        colour = f"C{index}"
        points = [r for r in rows if r["job"] == job and r["run"] == "curve"]
        if points:
            ax.plot([r["photos"] for r in points], [r["metrics"]["s_measure"] for r in points], "o-", color=colour, label=job)
        for r in (r for r in rows if r["job"] == job and r["run"] == "reference"):
            ax.axhline(r["metrics"]["s_measure"], color=colour, linestyle=":", linewidth=1)
    ax.set_xlabel("photos seen by the job (its start's not counted)")
    ax.set_ylabel("S-measure, 200 held-out DUTS-TR photos")
    ax.set_title("--recipe full (solid) against the hour recipe (dotted)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


@click.command()
@click.option("--run", type=click.Path(path_type=Path), default=Path("runs/real_full"), show_default=True)
@click.option("--reference", type=click.Path(path_type=Path), default=Path("runs/real"), show_default=True,
              help="A finished run whose jobs give one row each (the hour recipe).")
@click.option("--train-data", type=click.Path(path_type=Path), default=Path("../shared/data/duts-tr"), show_default=True)
@click.option("--benchmark", is_flag=True, help="Also judge each job's latest checkpoint on every photo of RUN/test.")
@report_user_errors
def main(run: Path, reference: Path, train_data: Path, benchmark: bool) -> None:
    """Judge every kept checkpoint of RUN on the held-out photos; write RUN/curve/curve.{json,md,png}."""
    if not run.is_dir():
        raise SalkitError(f"--run {run} does not exist")
    held = held_out_split(train_data, run / "curve")[1]
    rows: list[dict[str, Any]] = []
    for label, folder in (("reference", reference), ("curve", run)):
        for job in ORDER:
            found = checkpoints(folder, job)
            if label == "reference":
                found = found[-1:] if (folder / job / "finished").is_file() else []
            for step, checkpoint in found:
                cache = run / "curve" / ("reference" if label == "reference" else "") / job / f"step_{step:07d}.json"
                metrics = judged(cache, checkpoint, train_data, held, JUDGE[job], click.echo)
                rows.append({"job": job, "run": label, "step": step, "photos": step * metrics["photos_per_step"],
                             "checkpoint": checkpoint, "metrics": {m: metrics[m] for m in METRICS}})
    if benchmark:
        rows += benchmark_rows(run, rows, click.echo)
    for r in rows:
        r["checkpoint"] = str(r["checkpoint"])
    out = run / "curve"
    atomic_write_text(out / "curve.json", json.dumps(rows, indent=1) + "\n")
    atomic_write_text(out / "curve.md", markdown(rows))
    atomic_write_bytes(out / "curve.png", plot(rows))
    click.echo(markdown(rows))


if __name__ == "__main__":
    main()
