"""The speed records in the docs, generated from ``sal-runtime bench --json`` records (``make bench``).

    python -m experiments.bench_readme RECORDS… --gate G… --keep docs/bench --doc docs/speed.md --readme README.md

``--keep DIR`` files the records under their CPU class (:mod:`experiments.bench_classes`,
replacing that class's earlier ones) and everything below is then written from every class kept
there; without it, from the records given. ``--doc`` gets the full records between
``<!-- bench:begin -->`` and ``<!-- bench:end -->``, a part per CPU class: the CPU (model, the
capabilities that decide the plan, every precision's GEMM peak and the engine that set it), one
row per model and batch with the runtime's plan beside both torch baselines measured in the same
run (the authors' way: fp32 eager; torch's best CPU recipe: the split reference in channels_last,
under bf16 autocast where the CPU has bf16), the runtime's fraction of this CPU's best GEMM peak
for its precision, and the speed-ups aimed for: the ratio at batch 1 (same batch on both sides)
and best batch against best batch. ``--readme`` gets one short table per class between
``<!-- speed:begin -->`` and ``<!-- speed:end -->`` (:mod:`experiments.bench_tables`). Same
records → same sections, so regenerating without new measurements leaves the files unchanged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import click

from experiments.bench_classes import cpu_class, kept
from experiments.bench_classes import keep as file_records
from experiments.bench_tables import kind_of, model_label, plan_text, readme_tables
from experiments.repro_readme import check_markers, write_readme
from salkit.base.atomic import atomic_write_text
from salkit.base.errors import SalkitError, report_user_errors

MARKERS = ("<!-- bench:begin -->", "<!-- bench:end -->")
README_MARKERS = ("<!-- speed:begin -->", "<!-- speed:end -->")
KINDS = ("coop", "qefpn")
BASELINES = {"torch": "torch, authors' way (fp32 eager)", "torch_best_recipe": "torch's best CPU recipe"}
# The speed-ups aimed for: (kind, baseline) → the ratio asked for.
TARGETS = {("coop", "torch_best_recipe"): 2.0, ("coop", "torch"): 10.0, ("qefpn", "torch"): 3.0}
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


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def cpu_line(record: Mapping[str, Any]) -> str:
    machine = record["machine"]
    cpu = machine.get("cpu") or {}
    flags = set(cpu.get("flags") or ())
    present = [f for f in CAPABILITIES if f in flags]
    peaks, engines = machine.get("gemm_peaks_gflops") or {}, machine.get("gemm_peak_engines") or {}
    peak_text = ", ".join(f"{p} {v:.0f}" + (f" ({engines[p]})" if engines.get(p) else "") for p, v in sorted(peaks.items()) if v)
    load = machine.get("load_average") or {}
    load_text = (f"; load average {load['start']:.1f} before the run, {load['end']:.1f} at its end"
                 if load.get("start") is not None and load.get("end") is not None else "")
    return (f"CPU: **{cpu.get('model', 'unknown')}**, {machine.get('cpus')} cores; "
            f"{', '.join(present) if present else 'no AVX-512, no VNNI, no bf16, no AMX'}; "
            f"measured GEMM peaks (GFLOP/s, best engine): {peak_text or 'not recorded'}{load_text}")


def _roofline(entry: Mapping[str, Any], machine: Mapping[str, Any]) -> str:
    """"17.3% (torch, bf16 1631)": against the best any engine reaches for the plan's precision."""
    engine, precision, peak = machine.get("gemm_peak_engine"), machine.get("gemm_peak_precision"), machine.get("gemm_peak_gflops")
    of = f", {precision} {peak:.0f}" if precision and peak else ""
    per_graph = entry.get("roofline_fraction_per_graph")
    mixed = per_graph is not None and abs(per_graph - entry.get("roofline_fraction", 0)) > 5e-4
    return (f"{entry.get('roofline_fraction', 0):.1%} ({engine or 'engine not recorded'}{of})"
            + (f"; each graph at its precision's peak: {per_graph:.1%}" if mixed else ""))


def rows(record: Mapping[str, Any]) -> list[str]:
    kind = kind_of(record)
    out = []
    for batch, entry in record[kind].items():
        baselines = [entry.get(f"{key}_images_per_s") for key in BASELINES]
        out.append(f"| {model_label(record)} | {plan_text(record)} | {batch} | {_rate(entry['images_per_s'])} | "
                   + " | ".join(_rate(b) for b in baselines)
                   + f" | {_x(entry.get('speedup_vs_torch'))} | {_x(entry.get('speedup_vs_torch_best'))} | "
                   f"{_roofline(entry, record['machine'])} |")
    return out


def target_lines(record: Mapping[str, Any]) -> list[str]:
    """At batch 1 on both sides, and each side's best batch against the other's."""
    kind = kind_of(record)
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
        lines.append(f"- {model_label(record)} vs {BASELINES[key]}: {_x(at1)} at batch 1, {_x(best)} best batch vs best batch "
                     f"(torch's best batch {base['best_batch']}); target ≥ {wanted:g}× — **{'met' if met else 'not met'}**")
    return lines


def gate_line(check: Mapping[str, Any], label: str | None = None) -> str:
    """One experiments.gate_check record: the plan the runtime runs (per graph when mixed, named as the bench
    record names it) on photographs export never saw."""
    v = check["verdict"]
    numbers = ", ".join(f"{name} {v[key]:.2g}" for key, name in (
        ("saliency_mean_abs", "saliency mean |Δ|"), ("saliency_max_abs", "max |Δ|"), ("entropy_mean_abs", "entropy mean |Δ|"),
        ("residual", "final residual")) if key in v)
    blame = f" (graph {v['culprit']} to blame)" if not v["passed"] and v.get("culprit") else ""
    return (f"- {label or check['kind']} `{plan_text(check)}` on {check['images']} photographs of the {check['split']} split "
            f"(checked, not tuned on): {numbers or v.get('reason', '')} — "
            f"**{'within the gate' if v['passed'] else 'outside the gate'}**{blame}")


def breakdown_lines(record: Mapping[str, Any]) -> list[str]:
    """Per batch: graph time (calls × p50) and host time, and the bound on the ratio to torch the
    authors' way if the host work were free (torch's time per batch ÷ the graphs' time)."""
    kind, lines = kind_of(record), []
    for batch, entry in sorted(record[kind].items(), key=lambda kv: int(kv[0])):
        split = entry.get("breakdown")
        if not split:
            continue
        calls = ", ".join(f"{g} {n} × {split['graphs_p50_ms'][g]:.1f}" for g, n in split["graph_calls"].items())
        torch_ips = entry.get("torch_images_per_s")
        bound = (f"; with no host work at all: {int(batch) / torch_ips * 1e3 / split['graphs_ms']:.2f}× torch, authors' way"
                 if torch_ips else "")
        lines.append(f"- {model_label(record)}, batch {batch}: graphs {split['graphs_ms']:.0f} ms ({calls} ms), "
                     f"host {split['host_ms']:.0f} ms ({split['host_fraction']:.0%} of a predict){bound}")
    return lines


def section(records: Sequence[Mapping[str, Any]], gates: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The full records of one run (one CPU): settings, the table, targets, time split, gate checks."""
    if not records:
        raise SalkitError("no bench records given")
    lines = []
    for record in records:
        reason = str(record.get("plan_reason", "reason not recorded")).split("; not candidates")[0]  # the choice, not the list
        source = f" Transcribed from {record['transcribed_from']}." if record.get("transcribed_from") else ""
        lines.append(f"- {model_label(record)} (run of {record.get('recorded_utc', 'unknown date')}): {cpu_line(record)}. "
                     f"Plan `{plan_text(record)}`: {reason}.{source}")
    lines += [
        "",
        "| model | plan | batch | runtime img/s | " + " img/s | ".join(BASELINES.values())
        + " img/s | × authors' way (best batch) | × best recipe (best batch) | fraction of this CPU's best peak (engine) |",
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
        labels = {str(r.get("bundle")): model_label(r) for r in records}
        lines += ["", "Reduced precision judged by the final maps against float32 (the export gate's bounds: "
                  "saliency mean |Δ| ≤ 0.003, max ≤ 0.05, entropy ≤ 0.01):", ""]
        lines += [gate_line(g, labels.get(str(g.get("bundle")))) for g in gates]
    return lines


def _generated(command: str) -> list[str]:
    return [f"Generated by `{command}` from `make bench`'s records; edit experiments/bench_readme.py, not this text.", ""]


def render(records: Sequence[Mapping[str, Any]], command: str, gates: Sequence[Mapping[str, Any]] = ()) -> str:
    """One run's records (no class headings)."""
    return "\n".join(_generated(command) + section(records, gates)) + "\n"


def render_doc(entries: Sequence[Mapping[str, Any]], command: str) -> str:
    """Every kept CPU class, the newest first, each under a heading of its own."""
    lines = _generated(command) + ["The roofline column is the runtime's GFLOP/s (counted from the graphs) over the best "
                                   "GEMM rate any installed engine reaches on that CPU for the precision the plan runs "
                                   "(`roofline_fraction`; the engine that set it in brackets). A per-graph plan runs several "
                                   "precisions: its fraction is of the highest of their peaks, and beside it the fraction "
                                   "with each graph's FLOPs at its own precision's peak (`roofline_fraction_per_graph`).", ""]
    for entry in entries:
        model = (entry["records"][0].get("machine", {}).get("cpu") or {}).get("model", "CPU model not recorded")
        lines += [f"### {entry['label']}: {model}", ""] + section(entry["records"], entry.get("gates", ())) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _by_class(records: Sequence[Mapping[str, Any]], gates: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The given records as class entries (what --keep would file), in the order first seen."""
    entries: dict[str, dict[str, Any]] = {}
    for record in records:
        key, label = cpu_class(record)
        entries.setdefault(key, {"cpu_class": key, "label": label, "records": [], "gates": []})["records"].append(record)
    for entry in entries.values():
        bundles = {str(r.get("bundle")) for r in entry["records"]}
        entry["gates"] = [g for g in gates if str(g.get("bundle")) in bundles or len(entries) == 1]
    return list(entries.values())


def _check_target(path: Path, option: str, markers: tuple[str, str]) -> None:
    """Fail before anything is written when a document cannot take its section."""
    if not path.is_file():
        raise SalkitError(f"{option} {path} is not a file")
    check_markers(path.read_text(encoding="utf-8"), str(path), markers)


@click.command()
@click.argument("records", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gate", "gates", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="An experiments.gate_check record (repeatable).")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="File the records under their CPU class in this folder (docs/bench) and write from every class kept there.")
@click.option("--doc", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Replace the full records between the bench markers of this file (docs/speed.md).")
@click.option("--readme", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Replace the short tables between the speed markers of this file (README.md).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write this run's full records here.")
@report_user_errors
def main(records: tuple[Path, ...], gates: tuple[Path, ...], keep: Path | None, doc: Path | None, readme: Path | None,
         out: Path | None) -> None:
    for path, option, markers in ((doc, "--doc", MARKERS), (readme, "--readme", README_MARKERS)):
        if path is not None:
            _check_target(path, option, markers)
    command = "python -m experiments.bench_readme " + " ".join([*map(str, records), *(f"--gate {g}" for g in gates)])
    loaded, checks = [load_record(p) for p in records], [_load_gate(g) for g in gates]
    run = render(loaded, command, checks)
    if keep is not None:
        click.echo(f"kept under {file_records(loaded, checks, keep)}", err=True)
        command += f" --keep {keep}"
    entries = kept(keep) if keep is not None else _by_class(loaded, checks)
    if out is not None:
        atomic_write_text(out, run)
    if doc is not None:
        write_readme(doc, render_doc(entries, command), MARKERS)
    if readme is not None:
        write_readme(readme, readme_tables(entries), README_MARKERS)
    click.echo(run)


if __name__ == "__main__":
    main()
