"""`make real`'s report: results.json → a Markdown table (results.md, the README's "Real photographs").

The README section lives between the markers below; ``publish_readme`` rewrites only that part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from salkit.kernels.atomic import atomic_write_text
from salkit.kernels.errors import SalkitError

BEGIN, END = "<!-- real-photographs:begin -->", "<!-- real-photographs:end -->"
COLUMNS = [("mae", "MAE ↓"), ("s_measure", "S ↑"), ("max_f", "max F ↑"), ("mean_f", "mean F ↑"), ("mean_e", "mean E ↑")]


def markdown(results: dict[str, Any], picture: str = "examples.png") -> str:
    rows = results["rows"]
    timing = results["timing"]
    lines = [
        f"PASCAL-S test split ({results['n_test']} photographs; trained on the {results['train_split']} split only), "
        f"{results['protocol']}. One seed.",
        "",
        "| maps | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    lines += [f"| {name} | " + " | ".join(f"{metrics[key]:.3f}" for key, _ in COLUMNS) + " |" for name, metrics in rows.items()]
    delta = results["refine_delta"]
    lines += [
        "",
        "`refine` (the coop bundle's energy, K Langevin steps) on other models' maps, Δ = after − before: "
        + "; ".join(f"{base}: MAE {d['mae']:+.4f}, S {d['s_measure']:+.4f}" for base, d in delta.items()) + ".",
        "",
        f"Duration: {sum(v or 0 for v in timing['stages_wall_s'].values()) / 60:.0f} min wall-clock for the stages "
        f"(CPU-bound estimate on an idle machine {timing['cpu_bound_wall_min']:.0f} min), {timing['cores']} cores, {timing['cpu']}.",
        "",
        f"![6 test photographs: photo, ground truth, Ŷ, Ỹ after the energy, epistemic uncertainty, QE-FPN]({picture})",
    ]
    return "\n".join(lines) + "\n"


def publish_readme(readme: Path, text: str) -> None:
    """Replace the README's section between the markers (which must exist) with ``text``."""
    content = readme.read_text(encoding="utf-8")
    if BEGIN not in content or END not in content:
        raise SalkitError(f"{readme} has no {BEGIN} … {END} section to rewrite")
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(readme, f"{head}{BEGIN}\n{text}{END}{tail}")
