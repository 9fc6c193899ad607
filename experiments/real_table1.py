"""`make real`'s results in the published Table 1 form: trained on DUTS-TR, judged on all of PASCAL-S.

The paper's numbers stand on the same row as ours. Only what the paper prints is filled in: its
Table 1 gives S and MAE on PASCAL-S (anchor facts: ResNet-50, ImageNet-pretrained, trained on
DUTS-TR; weakly supervised: S-DUTS scribbles); every other cell of its columns stays "—".
"""

from __future__ import annotations

from typing import Any

# The cooperative paper's Table 1, PASCAL-S.
PAPER = {"coop Ỹ": {"s_measure": 0.873, "mae": 0.058}, "coop Ỹ, scribbles": {"s_measure": 0.834}}
COLUMNS = [("s_measure", "S ↑"), ("mean_f", "mean F ↑"), ("mean_e", "mean E ↑"), ("mae", "MAE ↓")]
# The targets of the real-photographs work (records, not tests), all on every PASCAL-S photograph.
TARGETS = {"coop Ỹ": {"s_measure": 0.83, "mae": 0.085}, "coop Ỹ, scribbles": {"s_measure": 0.78}, "QE-FPN": {"s_measure": 0.82}}
ORDER = ["coop Ỹ", "coop Ŷ", "coop Ỹ, scribbles", "coop Ŷ, scribbles", "QE-FPN", "QE-FPN + refine", "G(X)", "G(X) + refine", "G(X,h) alone",
         "centred Gaussian", "all-zero map"]


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def table(rows: dict[str, dict[str, float]], paper: bool = True) -> list[str]:
    names = [n for n in ORDER if n in rows] + [n for n in rows if n not in ORDER]
    head = "| maps | " + " | ".join(t for _, t in COLUMNS) + (" | paper S | paper MAE |" if paper else " |")
    lines = [head, "|---|" + "---:|" * (len(COLUMNS) + (2 if paper else 0))]
    for name in names:
        cells = [_cell(rows[name].get(key)) for key, _ in COLUMNS]
        if paper:
            cells += [_cell(PAPER.get(name, {}).get("s_measure")), _cell(PAPER.get(name, {}).get("mae"))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def verdicts(rows: dict[str, dict[str, float]]) -> list[str]:
    """Each target against the row it names: met or missed, with both numbers."""
    out = []
    for name, goals in TARGETS.items():
        if name not in rows:
            continue
        parts = []
        for key, goal in goals.items():
            value = rows[name][key]
            met = value <= goal if key == "mae" else value >= goal
            parts.append(f"{'S' if key == 's_measure' else 'MAE'} {value:.3f} {'meets' if met else 'misses'} "
                         f"{'≤' if key == 'mae' else '≥'} {goal}")
        out.append(f"- {name}: " + ", ".join(parts) + ".")
    return out


# The energy's claims photo by photo: (claim, the row that should be better, the row it starts from).
PAIRED_CLAIMS = [("Ỹ against Ŷ", "coop Ỹ", "coop Ŷ"), ("refine on G(X)", "G(X) + refine", "G(X)"),
                 ("refine on QE-FPN", "QE-FPN + refine", "QE-FPN")]


def paired_claims(paired: dict[str, Any]) -> list[str]:
    """Each claim photo by photo (experiments/real_paired.py): the mean difference, its bootstrap interval and the
    share of photographs on which the revised map is better (ties — an energy that does nothing — count as not better)."""
    out = []
    for claim, p in paired.items():
        parts = [f"{'MAE' if key == 'mae' else 'S'} {d['mean']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}], better on "
                 f"{100 * d['better_share']:.0f} %" for key, d in ((k, p[k]) for k in ("mae", "s_measure"))]
        out.append(f"- {claim}, photo by photo over {p['n']} photographs: " + "; ".join(parts) + ".")
    return out


def energy_claims(rows: dict[str, dict[str, float]], refine_delta: dict[str, dict[str, float]],
                  energy_steps: dict[str, Any] | None, paired: dict[str, Any] | None = None) -> list[str]:
    """Ỹ against Ŷ, refine against the maps it starts from (means, and photo by photo when ``paired`` is given),
    and the step count the export kept."""
    out = []
    if "coop Ỹ" in rows and "coop Ŷ" in rows:
        d = {k: rows["coop Ỹ"][k] - rows["coop Ŷ"][k] for k in ("mae", "s_measure")}
        helps = d["mae"] < 0 and d["s_measure"] > 0
        out.append(f"- Ŷ → Ỹ (the energy's steps): MAE {d['mae']:+.4f}, S {d['s_measure']:+.4f}: "
                   + ("Ỹ beats Ŷ on both." if helps else "Ỹ does not beat Ŷ on both."))
    for base, d in refine_delta.items():
        harm = d["mae"] > 0.002 or d["s_measure"] < -0.002
        out.append(f"- `refine` on {base}: MAE {d['mae']:+.4f}, S {d['s_measure']:+.4f} — "
                   + ("harms by more than 0.002." if harm else "harms by no more than 0.002."))
    if energy_steps:
        by = {r["steps"]: r for r in energy_steps["by_steps"]}
        base, trained, chosen = by[0], by[energy_steps["trained"]], energy_steps["chosen"]
        last = max(by)
        moved = lambda r: f"MAE {base['mae']:.4f} → {r['mae']:.4f}, S {base['s_measure']:.4f} → {r['s_measure']:.4f}"
        out.append(f"- On {energy_steps['photos']} held-out DUTS-TR photographs the export judged 0…{last} energy steps on "
                   f"the bundle's own Ŷ: the trained {energy_steps['trained']} moved {moved(trained)}, {last} moved "
                   f"{moved(by[last])}. It kept {chosen}"
                   + (f" ({moved(by[chosen])})." if chosen else
                      ": no step count lowered MAE without lowering S, so `predict` and `refine` leave maps as they are."))
    return out + paired_claims(paired or {})


__all__ = ["PAIRED_CLAIMS", "PAPER", "TARGETS", "energy_claims", "paired_claims", "table", "verdicts"]


FRONT_ROWS = ["coop Ỹ", "coop Ỹ, scribbles", "QE-FPN", "G(X)", "G(X,h) alone"]


def front_page(results: dict[str, Any], picture: str, report: str) -> str:
    """The README's short form (at most 14 lines): the main rows beside the paper's, the figure, where the rest is."""
    rows = {n: results["rows"][n] for n in FRONT_ROWS if n in results["rows"]}
    timing = results["timing"]
    wall = sum(v or 0 for v in timing["stages_wall_s"].values()) / 60
    lines = [
        f"`make real` trains on DUTS-TR from ImageNet EfficientNet-Lite0 (recipe `{results['recipe']}`: {wall:.0f} min on "
        f"{timing['cores']} cores of an {timing['cpu']}, data to report) and judges on all {results['n_test']} PASCAL-S "
        "photographs, as the cooperative paper's Table 1 does (its ResNet-50 trained 30 epochs on a GPU):",
        "",
        *table(rows),
        "",
        f"![PASCAL-S photographs; columns: photo, ground truth, Ŷ, Ỹ after the energy, epistemic uncertainty, QE-FPN]({picture})",
        "",
        f"Every row, the targets, the energy's effect, the recipe and its trials: [{report}]({report}).",
    ]
    return "\n".join(lines) + "\n"
