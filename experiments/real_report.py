"""`make real`'s report: results.json → Markdown (results.md, the README's "Real photographs" section).

The README section lives between the markers below; ``publish_readme`` rewrites only that part.
Every number in the text is read from results.json (and, for the recipe table, from the trials'
records), so regenerating never leaves a stale sentence behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from salkit.base.atomic import atomic_write_text
from salkit.base.errors import SalkitError

BEGIN, END = "<!-- real-photographs:begin -->", "<!-- real-photographs:end -->"
COLUMNS = [("mae", "MAE ↓"), ("s_measure", "S ↑"), ("max_f", "max F ↑"), ("mean_f", "mean F ↑"), ("mean_e", "mean E ↑")]
LOWER_IS_BETTER = {"mae"}
S_TARGET = 0.70


def _better(a: dict[str, float], b: dict[str, float], key: str) -> bool:
    return a[key] < b[key] if key in LOWER_IS_BETTER else a[key] > b[key]


def _comparison(rows: dict[str, Any], ours: str, other: str) -> str:
    """'coop Ỹ beats G(X) on MAE (0.1 vs 0.2) but not on S (…)' from the stored numbers."""
    if ours not in rows or other not in rows:
        return ""
    parts = {True: [], False: []}  # type: dict[bool, list[str]]
    for key, title in (("mae", "MAE"), ("s_measure", "S")):
        parts[_better(rows[ours], rows[other], key)].append(f"{title} ({rows[ours][key]:.3f} vs {rows[other][key]:.3f})")
    if not parts[False]:
        return f"{ours} beats {other} on {' and '.join(parts[True])}"
    if not parts[True]:
        return f"{ours} does not beat {other} on {' or '.join(parts[False])}"
    return f"{ours} beats {other} on {parts[True][0]} but not on {parts[False][0]}"


def _recipe(results: dict[str, Any]) -> list[str]:
    """The jobs with their options, steps and the CPU time each took in this run (1 thread each)."""
    train = results.get("train")
    if not train:
        return []
    steps = results.get("train_steps") or {}
    cpu = results["timing"].get("train_job_cpu_s") or {}
    # CPU per step of the job's last process (a resumed job's earlier process is not counted), × all its steps.
    rate = results["timing"].get("train_job_cpu_s_per_step") or {n: cpu[n] / steps[n] for n in cpu if cpu[n] and steps.get(n)}
    lines = ["| job | trainer | epochs | steps | CPU s / step | CPU min | options |", "|---|---|---:|---:|---:|---:|---|"]
    for name, job in train.items():
        options = " ".join(job["args"]) + (f" (starts from {job['init']})" if job.get("init") else "")
        options += f" (starts from {job['trunk']}'s trunk)" if job.get("trunk") else ""
        options += " (scribbles derived from the train masks)" if job.get("data") == "scribbles" else ""
        n, r = steps.get(name), rate.get(name)
        cost = f"{r:.2f} | {r * n / 60:.1f}" if n and r else "— | —"
        lines.append(f"| {name} | {job['cli']} | {job['epochs']} | {n or '—'} | {cost} | `{options}` |")
    return lines


def trials_table(trials: list[dict[str, Any]]) -> list[str]:
    """One row per (trial, epochs): the trial's own CPU minutes so far and its held-out scores."""
    held = next((r["n_held"] for r in trials if "n_held" in r), 0)
    lines = [f"| trial (batch 8; judged on {held} held-out train photos) | epochs | train CPU min | "
             "MAE Ŷ ↓ | S Ŷ ↑ | max F Ŷ ↑ | S Ỹ ↑ |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in trials:
        if "yhat" in r:
            scores = f"{r['yhat']['mae']:.3f} | {r['yhat']['s_measure']:.3f} | {r['yhat']['max_f']:.3f} | "
            if "descent" in r:  # the energy's descent from Ŷ, k = 1 … 2K steps
                scores += "after k = 1…{} steps: ".format(len(r["descent"])) + ", ".join(f"{d['s_measure']:.3f}" for d in r["descent"])
            else:
                scores += f"{r['ytilde']['s_measure']:.3f}" if "ytilde" in r else r.get("no_energy", "— (G(X): no energy)")
        else:
            scores = f"{r['cpu_s_per_step']:.1f} CPU s per step ({r['steps']} steps timed) | — | — | —"
        cpu = f"{r['train_cpu_s'] / 60:.1f}" if r.get("train_cpu_s") else "—"
        lines.append(f"| {r['name']} | {r['epochs']} | {cpu} | {scores} |")
    return lines


def published(results: dict[str, Any], picture: str = "examples.png", trials: list[dict[str, Any]] | None = None) -> str:
    """Trained on another set (DUTS-TR) than the benchmark: the Table 1 form, the paper's numbers beside ours."""
    from real_table1 import energy_claims, table, verdicts

    rows, timing = results["rows"], results["timing"]
    wall = sum(v or 0 for v in timing["stages_wall_s"].values()) / 60
    splits = results.get("splits") or {}
    lines = [
        f"Trained on DUTS-TR ({splits.get('pool', '?')} photographs to draw from, {splits.get('heldout', '?')} more held out "
        f"for choices), judged on all {results['n_test']} PASCAL-S photographs, the protocol of the cooperative paper's "
        f"Table 1: {results['protocol']}. One run, trainer seed {results.get('seed', 0)}, recipe `{results['recipe']}`, "
        f"on {timing['cpu']} ({timing['cores']} cores).",
        "",
        *table(rows),
        "",
        "The paper's model is a ResNet-50 trained for 30 epochs of DUTS-TR at 352² on a GPU; ours an EfficientNet-Lite0 "
        "trained for the parts of one epoch below, on two CPU cores.",
        "",
        "Against the targets:",
        "",
        *verdicts(rows),
        "",
        "The energy on these maps:",
        "",
        *energy_claims(rows, results["refine_delta"], results.get("energy_steps"), results.get("paired")),
    ]
    table2 = [c for c in (_comparison(rows, "coop Ỹ", "G(X,h) alone"), _comparison(rows, "coop Ỹ", "G(X)")) if c]
    if table2:
        lines.append("- Table 2's direction: " + "; ".join(table2) + ".")
    also = results.get("also_split")
    if also:
        lines += ["", f"The same models on PASCAL-S's {also['n']}-photo `{Path(str(also['split'])).name}` split (continuity "
                  "with the earlier records, which trained on PASCAL-S's own train split):", "", *table(also["rows"], paper=False)]
    lines += ["", f"Recipe `{results['recipe']}` (the coop bundle is exported from the `{results.get('coop_checkpoint', 'coop')}` "
              "job's checkpoint):", "", *_recipe(results)]
    if trials:
        lines += ["", "Recipe trials (held-out training photos; the test set is never read):", "", *trials_table(trials)]
    lines += [
        "",
        f"Duration: {wall:.0f} min wall-clock for the stages (CPU-bound estimate on an idle machine "
        f"{timing['cpu_bound_wall_min']:.0f} min).",
        "",
        "Columns: photo | ground truth | Ŷ (generator) | Ỹ after the energy | epistemic uncertainty | QE-FPN.",
        "",
        f"![PASCAL-S photographs: photo, ground truth, Ŷ, Ỹ after the energy, epistemic uncertainty, QE-FPN]({picture})",
    ]
    return "\n".join(lines) + "\n"


def markdown(results: dict[str, Any], picture: str = "examples.png", trials: list[dict[str, Any]] | None = None) -> str:
    if results.get("train_data") and results["train_data"] != results.get("dataset"):
        return published(results, picture, trials)
    rows = results["rows"]
    timing = results["timing"]
    wall = sum(v or 0 for v in timing["stages_wall_s"].values()) / 60
    lines = [
        f"PASCAL-S test split ({results['n_test']} photographs; every model trained on the {results['train_split']} "
        f"split only), {results['protocol']}. One run, trainer seed {results.get('seed', 0)}: the hour has room for one "
        f"(the spread over further seeds' runs is `experiments/real_seeds.py`'s).",
        "",
        "| maps | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    lines += [f"| {name} | " + " | ".join(f"{metrics[key]:.3f}" for key, _ in COLUMNS) + " |" for name, metrics in rows.items()]
    coop = rows.get("coop Ỹ", {})
    lines += ["", "Read from the table:", ""]
    if coop:
        verdict = "meets" if coop["s_measure"] >= S_TARGET else "misses"
        lines.append(f"- coop Ỹ's S-measure {coop['s_measure']:.3f} {verdict} the target {S_TARGET:.2f} "
                     f"(centred Gaussian {rows['centred Gaussian']['s_measure']:.3f}).")
        judged = [r for r in trials or [] if "yhat" in r]
        if coop["s_measure"] < S_TARGET and judged:
            best = max(judged, key=lambda r: r["yhat"]["s_measure"])
            lines.append(f"  The recipe trials below (held-out train photos) reach at best S {best['yhat']['s_measure']:.3f} "
                         f"({best['name']}, {best['epochs']} epochs, {best['train_cpu_s'] / 60:.1f} CPU min): trained from "
                         "scratch on these photographs, S grows slowly with training (see the trials below).")
    table2 = [c for c in (_comparison(rows, "coop Ỹ", "G(X,h) alone"), _comparison(rows, "coop Ỹ", "G(X)")) if c]
    if table2:
        lines.append("- Table 2's direction: " + "; ".join(table2) + ".")
    if "coop Ỹ" in rows and "coop Ŷ" in rows:
        d = {k: rows["coop Ỹ"][k] - rows["coop Ŷ"][k] for k in ("mae", "s_measure")}
        lines.append(f"- The energy's K Langevin steps move coop Ŷ → Ỹ by MAE {d['mae']:+.4f}, S {d['s_measure']:+.4f}.")
    delta = results["refine_delta"]
    lines.append("- `refine` (the coop bundle's energy) on other models' maps, Δ = after − before: "
                 + "; ".join(f"{base}: MAE {d['mae']:+.4f}, S {d['s_measure']:+.4f}" for base, d in delta.items()) + ".")
    if "coop Ỹ, scribbles" in rows and coop:
        s = results.get("scribbles") or {}
        labelled = (f" ({100 * s['foreground_fraction']:.2f} % of pixels labelled foreground, "
                    f"{100 * s['background_fraction']:.2f} % background)") if s else ""
        lines.append(f"- Weak supervision: trained on scribbles derived from the train masks{labelled}, coop Ỹ scores "
                     f"MAE {rows['coop Ỹ, scribbles']['mae']:.3f} / S {rows['coop Ỹ, scribbles']['s_measure']:.3f} against "
                     f"{coop['mae']:.3f} / {coop['s_measure']:.3f} with full masks.")
    if "G(X,h) alone" not in rows:
        why = "was left out of this run (`--skip gxh`)" if "gxh" in (results.get("skipped") or []) else \
            "is not in this recipe (`--recipe full` has it)"
        lines.append(f"- G(X,h) trained alone {why}, so that half of Table 2 is not measured here.")
    zero = rows.get("all-zero map")
    trained = [n for n in rows if n not in ("all-zero map", "centred Gaussian")]
    beaten = [n for n in trained if zero and rows[n]["mae"] > zero["mae"]]
    if zero and coop and zero["mae"] < coop["mae"]:
        which = ("every trained model's" if len(beaten) == len(trained)
                 else f"{len(beaten)} of the {len(trained)} trained rows' (not {', '.join(n for n in trained if n not in beaten)})")
        lines.append(f"- MAE favours empty maps on PASCAL-S: the all-zero map's {zero['mae']:.3f} beats {which}; "
                     "S, F and E rank them the other way.")
    if scribble_y := rows.get("coop Ỹ, scribbles"):
        d = {k: scribble_y[k] - rows["coop Ŷ, scribbles"][k] for k in ("mae", "s_measure")} if "coop Ŷ, scribbles" in rows else None
        if d is not None and max(abs(v) for v in d.values()) < 5e-4:
            lines.append("- The scribble model's own energy leaves its maps as they were (Ŷ → Ỹ: MAE "
                         f"{d['mae']:+.4f}, S {d['s_measure']:+.4f}): only the fully supervised model's energy is fine-tuned "
                         "to refine (docs/coop.md).")
    level = results.get("epistemic_max_level")
    if level is not None and level <= 2:
        lines.append(f"- The epistemic column is black: on every test pixel the latent samples' disagreement stays at or below "
                     f"{level} of the 8-bit map's 255 levels (ln 2 nats = 255), i.e. the generator all but ignores h.")
    judged = [label for name, label in (("G(X)", "G(X)"), ("G(X,h) alone", "G(X,h)"), ("coop Ỹ, scribbles", "the scribble model"))
              if name in rows]
    lines += ["", f"Recipe `{results['recipe']}` (the coop bundle is exported from the `{results.get('coop_checkpoint', 'coop')}` "
              f"job's checkpoint; {', '.join(judged)} are judged through the torch reference):", ""]
    lines += _recipe(results)
    if not trials:
        lines += ["", "No recipe trial is reported: the trials (`experiments/real_trials.py`) were starved by other jobs on the "
                  "shared machine; the choice rests on the measured step costs (`docs/data-and-eval.md`)."]
    if trials:
        lines += ["", "What was tried before choosing it (`experiments/real_trials.py`: short trainings on 4/5 of the "
                  "train split, judged on the other 1/5; the test split is never read):", ""]
        lines += trials_table(trials)
    lines += [
        "",
        f"Duration: {wall:.0f} min wall-clock for the stages (CPU-bound estimate on an idle machine "
        f"{timing['cpu_bound_wall_min']:.0f} min), {timing['cores']} cores, {timing['cpu']}.",
        "",
        "Columns: photo | ground truth | Ŷ (generator) | Ỹ after the energy | epistemic uncertainty | QE-FPN.",
        "",
        f"![6 test photographs: photo, ground truth, Ŷ, Ỹ after the energy, epistemic uncertainty, QE-FPN]({picture})",
    ]
    return "\n".join(lines) + "\n"


def readme_section(readme: Path, begin: str = BEGIN, end: str = END) -> tuple[str, str]:
    """The README's text before and after the section; the markers must each appear once, in order."""
    try:
        content = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SalkitError(f"README {readme} cannot be read: {err}") from None
    if content.count(begin) != 1 or content.count(end) != 1 or content.index(begin) > content.index(end):
        raise SalkitError(f"{readme} has no single {begin} … {end} section to rewrite")
    head, rest = content.split(begin, 1)
    return head, rest.split(end, 1)[1]


def publish_readme(readme: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the README's section between the markers with ``text``."""
    head, tail = readme_section(readme, begin, end)
    atomic_write_text(readme, f"{head}{begin}\n{text}{end}{tail}")
