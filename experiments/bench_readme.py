"""The speed section of docs/speed.md, generated from ``sal-runtime bench --json`` records (``make bench``).

    python -m experiments.bench_readme --doc docs/speed.md runs/bench/coop.json runs/bench/qefpn.json

Writes the section between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``: the CPU the records
were measured on (model and the capabilities that decide the plan), one row per model and batch
with the runtime's plan beside both torch baselines measured in the same run (the authors' way:
fp32 eager; torch's best CPU recipe: the split reference in channels_last, under bf16 autocast
where the CPU has bf16), and the speed-ups aimed for read off the rows: the ratio at batch 1 (same
batch on both sides) and best batch against best batch. Same records → same section, so
regenerating without new measurements leaves the file unchanged. (The module keeps its name from
when the section lived in the README.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import click

from salkit.base.atomic import atomic_write_text
from salkit.base.errors import SalkitError, report_user_errors
from experiments.repro_readme import check_readme, write_readme

MARKERS = ("<!-- bench:begin -->", "<!-- bench:end -->")
KINDS = ("coop", "qefpn")
BASELINES = {"torch": "torch, authors' way (fp32 eager)", "torch_best_recipe": "torch's best CPU recipe"}
# The speed-ups aimed for: (kind, baseline) → the ratio asked for.
TARGETS = {("coop", "torch_best_recipe"): 2.0, ("coop", "torch"): 8.0, ("qefpn", "torch"): 3.0}
CAPABILITIES = ("avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def load_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise SalkitError(f"bench record {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise SalkitError(f"bench record {path} is not JSON: {exc}") from None
    if not isinstance(record, dict) or "machine" not in record or not any(k in record for k in KINDS):
        raise SalkitError(f"{path} is not a sal-runtime bench record (needs machine and coop or qefpn)")
    if "recorded_utc" not in record:  # records written before sal-runtime bench stamped them: the file's date
        record["recorded_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime(path.stat().st_mtime)) + " UTC, file date"
    return record


def _load_gate(path: Path) -> dict[str, Any]:
    try:
        check = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SalkitError(f"gate record {path}: {exc}") from None
    if not isinstance(check, dict) or "verdict" not in check:
        raise SalkitError(f"{path} is not an experiments.gate_check record (needs verdict)")
    return check


def _kind(record: Mapping[str, Any]) -> str:
    return next(k for k in KINDS if k in record)


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def cpu_line(record: Mapping[str, Any]) -> str:
    cpu = record["machine"].get("cpu") or {}
    flags = set(cpu.get("flags") or ())
    present = [f for f in CAPABILITIES if f in flags]
    peaks = record["machine"].get("gemm_peaks_gflops") or {}
    peak_text = ", ".join(f"{p} {v:.0f}" for p, v in sorted(peaks.items()) if v)
    return (f"CPU: **{cpu.get('model', 'unknown')}**, {record['machine'].get('cpus')} cores; "
            f"{', '.join(present) if present else 'no AVX-512, no VNNI, no bf16, no AMX'}; "
            f"measured GEMM peaks (GFLOP/s): {peak_text or 'not recorded'}")


def rows(record: Mapping[str, Any]) -> list[str]:
    kind = _kind(record)
    out = []
    for batch, entry in record[kind].items():
        baselines = [entry.get(f"{key}_images_per_s") for key in BASELINES]
        out.append(f"| {kind} | {record.get('plan', record.get('backend'))} | {batch} | {_rate(entry['images_per_s'])} | "
                   + " | ".join(_rate(b) for b in baselines)
                   + f" | {_x(entry.get('speedup_vs_torch'))} | {_x(entry.get('speedup_vs_torch_best'))} | "
                   f"{entry.get('roofline_fraction', 0):.1%} |")
    return out


def target_lines(record: Mapping[str, Any]) -> list[str]:
    """At batch 1 on both sides, and each side's best batch against the other's."""
    kind = _kind(record)
    entries = record[kind]
    ours_best = max(entries.values(), key=lambda e: e["images_per_s"])
    lines = []
    for (k, key), wanted in TARGETS.items():
        if k != kind or key not in record:
            continue
        base = record[key]
        at1 = None
        if "1" in entries and base["per_batch"].get("1"):
            at1 = entries["1"]["images_per_s"] / base["per_batch"]["1"]
        best = ours_best["images_per_s"] / base["best_images_per_s"]
        met = all(r is not None and r >= wanted for r in (at1, best))
        lines.append(f"- {kind} vs {BASELINES[key]}: {_x(at1)} at batch 1, {_x(best)} best batch vs best batch "
                     f"(torch's best batch {base['best_batch']}); target ≥ {wanted:g}× — **{'met' if met else 'not met'}**")
    return lines


def gate_line(check: Mapping[str, Any]) -> str:
    """One experiments.gate_check record: the chosen plan on photographs export never saw."""
    v = check["verdict"]
    numbers = ", ".join(f"{label} {v[key]:.2g}" for key, label in (
        ("saliency_mean_abs", "saliency mean |Δ|"), ("saliency_max_abs", "max |Δ|"), ("entropy_mean_abs", "entropy mean |Δ|"),
        ("residual", "final residual")) if key in v)
    return (f"- {check['kind']} `{check['plan']}` on {check['images']} photographs of the {check['split']} split "
            f"(checked, not tuned on): {numbers or v.get('reason', '')} — **{'within the gate' if v['passed'] else 'outside the gate'}**")


def breakdown_lines(record: Mapping[str, Any]) -> list[str]:
    """Per batch: graph time (calls × p50) and host time, and the bound on the ratio to torch the
    authors' way if the host work were free (torch's time per batch ÷ the graphs' time)."""
    kind, lines = _kind(record), []
    for batch, entry in sorted(record[kind].items(), key=lambda kv: int(kv[0])):
        split = entry.get("breakdown")
        if not split:
            continue
        calls = ", ".join(f"{g} {n} × {split['graphs_p50_ms'][g]:.1f}" for g, n in split["graph_calls"].items())
        torch_ips = entry.get("torch_images_per_s")
        bound = (f"; with no host work at all: {int(batch) / torch_ips * 1e3 / split['graphs_ms']:.2f}× torch, authors' way"
                 if torch_ips else "")
        lines.append(f"- {kind}, batch {batch}: graphs {split['graphs_ms']:.0f} ms ({calls} ms), host {split['host_ms']:.0f} ms "
                     f"({split['host_fraction']:.0%} of a predict){bound}")
    return lines


def render(records: Sequence[Mapping[str, Any]], command: str, gates: Sequence[Mapping[str, Any]] = ()) -> str:
    if not records:
        raise SalkitError("no bench records given")
    lines = [f"Generated by `{command}` from `make bench`'s records; edit experiments/bench_readme.py, not this text.", ""]
    for record in records:
        settings = record.get("settings", {})
        samples = "" if settings.get("samples") is None else f"N = {settings['samples']}, "
        steps = "K" if _kind(record) == "coop" else "Broyden iterations"
        reason = str(record.get("plan_reason", "reason not recorded")).split("; not candidates")[0]  # the choice, not the list
        lines.append(f"- {_kind(record)} (run of {record.get('recorded_utc', 'unknown date')}): {cpu_line(record)}. Input {settings.get('input_size')}², "
                     f"{samples}{steps} = {settings.get('steps')}; plan `{record.get('plan')}`: {reason}")
    lines += [
        "",
        "| model | plan | batch | runtime img/s | " + " img/s | ".join(BASELINES.values())
        + " img/s | × authors' way (best batch) | × best recipe (best batch) | fraction of the plan's peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        lines += rows(record)
    lines += ["", "Targets:", ""]
    for record in records:
        lines += target_lines(record)
    split = [line for record in records for line in breakdown_lines(record)]
    if split:
        lines += ["", "Where one predict's time goes (graphs timed alone in the same rounds; host = the rest):", ""] + split
    if gates:
        lines += ["", "Reduced precision judged by the final maps against float32 (the export gate's bounds: "
                  "saliency mean |Δ| ≤ 0.003, max ≤ 0.05, entropy ≤ 0.01):", ""]
        lines += [gate_line(g) for g in gates]
    return "\n".join(lines) + "\n"


@click.command()
@click.argument("records", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--doc", "--readme", "readme", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Replace the section between the bench markers of this file (docs/speed.md; --readme is the old name).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the section here.")
@click.option("--gate", "gates", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="An experiments.gate_check record (repeatable).")
@report_user_errors
def main(records: tuple[Path, ...], readme: Path | None, out: Path | None, gates: tuple[Path, ...]) -> None:
    if readme is not None:
        check_readme(readme, MARKERS)
    command = "python -m experiments.bench_readme " + " ".join([*map(str, records), *(f"--gate {g}" for g in gates)])
    section = render([load_record(p) for p in records], command, [_load_gate(g) for g in gates])
    if out is not None:
        atomic_write_text(out, section)
    if readme is not None:
        write_readme(readme, section, MARKERS)
    click.echo(section)


if __name__ == "__main__":
    main()
