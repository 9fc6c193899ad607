"""The synthetic-set results section of docs/results.md, generated from the reproduction harness's
``results.json``, between two marker comments (the marker helpers here also serve the speed section
of docs/speed.md, experiments.bench_readme; the module keeps its name from when both sections
lived in the README).

Everything between the markers is replaced; everything outside stays byte for byte. The section
says which command produced each table and on which machine, so a reader can tell what a number
means and rerun it. The same inputs give the same section (no dates, no wall times of the call
that wrote it), so regenerating without new measurements leaves the file unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from experiments.repro_verdict import format_stat
from salkit.base.atomic import atomic_write_text
from salkit.base.errors import SalkitError

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"

# Pictures linked from the section, in this order, with what each shows.
PICTURE_CAPTIONS = {
    "examples": "image | ground truth | generator Ŷ | cooperative Ỹ | predictive entropy",
    "refine": "image | ground truth | QE-FPN | + energy refine | degraded GT | + energy refine",
    "curves": "precision–recall and F-/E-measure vs threshold",
    "residuals": "relative residuals at the inference solve",
}


def check_markers(text: str, where: str, markers: tuple[str, str] = (BEGIN, END)) -> tuple[int, int]:
    """Offsets of the end of the begin marker and the start of the end marker; one line otherwise."""
    begin, end = markers
    for marker in markers:
        count = text.count(marker)
        if count != 1:
            raise SalkitError(f"{where} must hold the marker {marker} exactly once (found {count}); "
                              f"put {begin} and {end} where the generated section goes")
    start, stop = text.index(begin) + len(begin), text.index(end)
    if stop < start:
        raise SalkitError(f"{where}: {end} comes before {begin}")
    return start, stop


def replace_section(text: str, section: str, where: str = "the document", markers: tuple[str, str] = (BEGIN, END)) -> str:
    start, stop = check_markers(text, where, markers)
    return text[:start] + "\n" + section.strip("\n") + "\n" + text[stop:]


def check_readme(readme: Path, markers: tuple[str, str] = (BEGIN, END)) -> None:
    """Fail before any long run when the document cannot take the section."""
    if not readme.is_file():
        raise SalkitError(f"--doc {readme} is not a file")
    check_markers(readme.read_text(encoding="utf-8"), str(readme), markers)


def write_readme(readme: Path, section: str, markers: tuple[str, str] = (BEGIN, END)) -> bool:
    """Replace the section atomically; returns whether the file changed (untouched when it would not)."""
    text = readme.read_text(encoding="utf-8")
    new = replace_section(text, section, str(readme), markers)
    if new == text:
        return False
    atomic_write_text(readme, new)
    return True


def _number(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def key_numbers(claim: Mapping[str, Any]) -> str:
    """The first check's numbers (mean ± std over seeds) and how the checks came out."""
    checks = claim.get("checks") or []
    if not checks:
        return "—"
    first, rows = checks[0], claim["rows"]
    digits = 4 if first["metric"] == "mae" else 3
    a = f"{first['a']} {first['metric']} {format_stat(rows[first['a']][first['metric']], digits)}"
    if first["b"] is None:
        text = f"{a} (claimed > {first['threshold']:g})"
    else:
        text = f"{a} vs {first['b']} {format_stat(rows[first['b']][first['metric']], digits)}"
    verdicts = [c["verdict"] for c in checks]
    tally = {v: verdicts.count(v) for v in ("yes", "no")}
    mixed = len(verdicts) - tally["yes"] - tally["no"]
    return f"{text}; checks: {tally['yes']} yes, {mixed} mixed, {tally['no']} no"


def repro_lines(results: Mapping[str, Any], results_link: str) -> list[str]:
    s, m = results["sizes"], results["machine"]
    seeds = ", ".join(map(str, s["seeds"]))
    lines = [
        f"**Papers' claims on the synthetic set** (budget `{results['budget']}`: {s['size']}² images, "
        f"{s['n_train']} training / {s['n_test']} test scenes, seeds {seeds}; mean ± std over seeds; "
        f"every row, check and seed in [{results_link}]({results_link})).", "",
        f"Command: `{results.get('command') or 'python -m experiments.repro --budget ' + results['budget']}`  ",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, torch {m['torch']} ({m['threads']} threads)", "",
        "| claim | reproduced? | key numbers (first check) |", "|---|---|---|",
    ]
    for claim in results["claims"].values():
        lines.append(f"| {claim['title']} | {claim['verdict']} | {key_numbers(claim)} |")
    return lines


def picture_lines(pictures: Mapping[str, str]) -> list[str]:
    lines = []
    for name, caption in PICTURE_CAPTIONS.items():
        if name in pictures:
            lines += [f"{caption}:", "", f"![{name}]({pictures[name]})", ""]
    return lines


def render_section(results: Mapping[str, Any], *, command: str, pictures: Mapping[str, str], results_link: str) -> str:
    """The section's Markdown. ``pictures``: name → link relative to the document; ``command``: the
    call that writes this section."""
    lines = [f"<!-- Generated by `{command}`; edit the generator (experiments.repro_readme), not this text. -->", ""]
    lines += repro_lines(results, results_link) + [""]
    lines += picture_lines(pictures)
    return "\n".join(lines).rstrip("\n") + "\n"


def relative_link(target: Path, readme: Path) -> str:
    """A Markdown link from the document's folder to ``target`` (forward slashes on every platform)."""
    return Path(os.path.relpath(target.resolve(), readme.resolve().parent)).as_posix()
