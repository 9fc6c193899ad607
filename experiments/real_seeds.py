"""The spread over seeds: several `make real` runs (``--seed``) → mean ± sd per row, and each claim per seed.

    python experiments/real_seeds.py runs/real_full runs/real_full_seed1 runs/real_full_seed2 \
        --out runs/real_seeds [--doc docs/results.md]

Each run folder holds a results.json written by experiments/real.py. The runs must judge the same
test split of the same data under the same protocol and recipe, with distinct seeds; a run may
leave out skippable jobs (``--skip``), and a row is then averaged over the runs that have it (its
``n`` says how many). A claim ("the energy's refinement lowers QE-FPN's MAE", …) is counted per
seed: one seed's table can show a difference that another seed reverses. ``--per-photo`` also pairs
the two rows photo by photo within each run (experiments/real_paired.py: the share of photographs a
claim holds on and a bootstrap interval of the mean difference), reading each run's maps.
Writes ``<out>/seeds.json`` and ``<out>/seeds.md``; ``--doc`` (docs/results.md) also rewrites that
file's section between the markers below.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from salkit.base.atomic import atomic_write_text
from salkit.base.errors import SalkitError, report_user_errors

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling modules
from real_maps import MAP_FOLDERS
from real_paired import CONFIDENCE, paired
from real_report import LOWER_IS_BETTER, publish_readme, readme_section

BEGIN, END = "<!-- real-seeds:begin -->", "<!-- real-seeds:end -->"
METRICS = (("mae", "MAE ↓"), ("s_measure", "S ↑"), ("max_f", "max F ↑"))
SAME = ("dataset", "test_split", "protocol", "recipe", "n_test")  # what every run must share
# (ours, base): "ours improves on base", judged per seed on MAE and on S.
CLAIMS = (("coop Ỹ", "coop Ŷ"), ("QE-FPN + refine", "QE-FPN"), ("G(X) + refine", "G(X)"), ("coop Ỹ", "G(X)"),
          ("coop Ỹ", "G(X,h) alone"), ("coop Ỹ", "coop Ỹ, scribbles"))


def read_runs(folders: list[Path]) -> list[dict[str, Any]]:
    """Each folder's results.json, checked to be comparable (one line naming the first mismatch)."""
    runs = []
    for folder in folders:
        path = folder / "results.json"
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SalkitError(f"{path} cannot be read as JSON: {err}") from None
        if not isinstance(results, dict) or not isinstance(results.get("rows"), dict):
            raise SalkitError(f"{path} is not a results.json of experiments/real.py (no 'rows')")
        runs.append({**results, "folder": str(folder), "seed": int(results.get("seed", 0))})
    if len(runs) < 2:
        raise SalkitError(f"a spread needs at least 2 runs, got {len(runs)}")
    for key in SAME:
        values = {json.dumps(run.get(key)) for run in runs}
        if len(values) > 1:
            raise SalkitError(f"the runs differ in {key!r} ({', '.join(sorted(values))}): they do not judge the same thing")
    seeds = [run["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise SalkitError(f"the runs' seeds repeat ({seeds}): a spread needs distinct seeds")
    return runs


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n − 1 in the denominator; None for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def aggregate(runs: list[dict[str, Any]], per_photo: bool = False) -> dict[str, Any]:
    """Per row and metric: each seed's value, mean, sd, n; per claim and metric: the seeds where it holds
    (and with ``per_photo``, each seed's photo-by-photo comparison: real_paired.paired)."""
    names = list(dict.fromkeys(name for run in runs for name in run["rows"]))  # first run's order, then any new
    rows = {}
    for name in names:
        having = [run for run in runs if name in run["rows"]]
        rows[name] = {"seeds": [run["seed"] for run in having]}
        for key, _ in METRICS:
            values = [float(run["rows"][name][key]) for run in having]
            mean, sd = mean_sd(values)
            rows[name][key] = {"values": values, "mean": mean, "sd": sd}
    claims = []
    for ours, base in CLAIMS:
        having = [run for run in runs if ours in run["rows"] and base in run["rows"]]
        if not having:
            continue
        claim: dict[str, Any] = {"ours": ours, "base": base, "seeds": [run["seed"] for run in having]}
        for key in ("mae", "s_measure"):
            deltas = [float(run["rows"][ours][key]) - float(run["rows"][base][key]) for run in having]
            better = [d < 0 if key in LOWER_IS_BETTER else d > 0 for d in deltas]
            mean, sd = mean_sd(deltas)
            claim[key] = {"deltas": deltas, "mean": mean, "sd": sd, "holds_in": sum(better)}
        if per_photo:
            claim["per_photo"] = [{"seed": run["seed"], **paired(Path(run["folder"]), MAP_FOLDERS[ours], MAP_FOLDERS[base],
                                                                  LOWER_IS_BETTER)} for run in having]
        claims.append(claim)
    first = runs[0]
    return {"runs": [run["folder"] for run in runs], "seeds": [run["seed"] for run in runs],
            **{key: first.get(key) for key in SAME}, "rows": rows, "claims": claims,
            "cpu": sorted({(run.get("timing") or {}).get("cpu", "unknown") for run in runs})}


def _cell(stat: dict[str, Any]) -> str:
    return f"{stat['mean']:.3f}" if stat["sd"] is None else f"{stat['mean']:.3f} ± {stat['sd']:.3f}"


def markdown(agg: dict[str, Any]) -> str:
    """The spread table and the per-seed claims, every number read from ``agg``."""
    n = len(agg["seeds"])
    lines = [f"Spread over {n} seeds ({', '.join(map(str, agg['seeds']))}) of the `{agg['recipe']}` recipe, on the same "
             f"{agg['n_test']} test photographs: mean ± sample sd over the seeds that trained the row (`experiments/real_seeds.py`).",
             "", "| maps | " + " | ".join(title for _, title in METRICS) + " | seeds |",
             "|---|" + "---:|" * len(METRICS) + "---|"]
    for name, row in agg["rows"].items():
        seeds = "all" if len(row["seeds"]) == n else ", ".join(map(str, row["seeds"]))
        lines.append(f"| {name} | " + " | ".join(_cell(row[key]) for key, _ in METRICS) + f" | {seeds} |")
    lines += ["", "Each claim, seed by seed (Δ = first − second, mean ± sd):", ""]
    for claim in agg["claims"]:
        k = len(claim["seeds"])
        parts = []
        for key, title in (("mae", "MAE"), ("s_measure", "S")):
            c = claim[key]
            spread = "" if c["sd"] is None else f" ± {c['sd']:.4f}"
            parts.append(f"{title} Δ {c['mean']:+.4f}{spread}, better in {c['holds_in']} of {k}")
        lines.append(f"- {claim['ours']} vs {claim['base']}: " + "; ".join(parts) + ".")
        for one in claim.get("per_photo", []):
            lines.append(f"  - seed {one['seed']}, photo by photo ({one['n']}): " + "; ".join(
                f"{title} Δ {one[key]['mean']:+.4f} [{one[key]['ci'][0]:+.4f}, {one[key]['ci'][1]:+.4f}], "
                f"better on {100 * one[key]['better_share']:.0f} %" for key, title in (("mae", "MAE"), ("s_measure", "S"))) + ".")
    if any("per_photo" in claim for claim in agg["claims"]):
        lines += ["", f"Photo by photo: the mean difference with its {100 * CONFIDENCE:.0f} % bootstrap interval (BCa over the "
                  "photographs) and the share of photographs on which the first row is better (`experiments/real_paired.py`)."]
    lines += ["", f"CPU: {', '.join(agg['cpu'])}."]
    return "\n".join(lines) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("runs", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", default="runs/real_seeds", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--per-photo", is_flag=True, help="Also pair each claim's rows photo by photo in every run (reads the maps).")
@click.option("--doc", "--readme", "readme", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Also rewrite this file's section between {BEGIN} and {END} (docs/results.md; --readme is the old name).")
@report_user_errors
def main(runs: tuple[Path, ...], out: Path, per_photo: bool, readme: Path | None) -> None:
    """Mean ± sd over several `make real` runs with different seeds."""
    if readme is not None:
        readme_section(readme, BEGIN, END)  # a file without the markers fails before anything is written
    agg = aggregate(read_runs(list(runs)), per_photo=per_photo)
    text = markdown(agg)
    atomic_write_text(out / "seeds.json", json.dumps(agg, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(out / "seeds.md", text)
    if readme is not None:
        publish_readme(readme, text, BEGIN, END)
    click.echo(text, nl=False)


if __name__ == "__main__":
    main()
