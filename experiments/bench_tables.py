"""The README's speed tables: one short table per CPU class, from the records kept per class.

Each row is one model as benched (the papers' preset or the bundle ``make real`` exports), with
images per second at batch 1 and at each side's best batch for the runtime and both torch
baselines of the same run, and the runtime's ratio to each (batch 1 against batch 1, best batch
against best batch). Numbers only come from records; a baseline a record lacks is "–".
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

KINDS = ("coop", "qefpn")
KIND_NAMES = {"coop": "coop", "qefpn": "QE-FPN"}
BACKBONES = {"resnet50": "ResNet-50", "resnet34": "ResNet-34", "resnet18": "ResNet-18", "efficientnet-lite0": "EfficientNet-Lite0",
             "efficientnet-lite1": "EfficientNet-Lite1", "efficientnet-lite2": "EfficientNet-Lite2"}
# Baselines, in the README's column order: torch's best CPU recipe first, the authors' way second.
README_BASELINES = (("torch_best_recipe", "torch's best CPU recipe", "× best recipe"), ("torch", "torch, authors' way", "× authors' way"))


def kind_of(record: Mapping[str, Any]) -> str:
    return next(k for k in KINDS if k in record)


def model_label(record: Mapping[str, Any]) -> str:
    """"coop ResNet-50 352², N 10, K 5": the model and the loop settings it ran."""
    kind, settings = kind_of(record), record.get("settings", {})
    backbone = (record.get("model") or {}).get("backbone")
    loop = (f"N {settings['samples']}, K {settings.get('steps')}" if settings.get("samples") is not None
            else f"T {settings.get('steps')}")
    name = f"{KIND_NAMES[kind]} {BACKBONES.get(backbone, backbone)}" if backbone else KIND_NAMES[kind]
    return f"{name} {settings.get('input_size')}², {loop}"


def plan_text(record: Mapping[str, Any]) -> str:
    """The plan that ran: "openvino:fp32", or per graph "encoder openvino:int8, energy_grad openvino:fp32, …"."""
    graphs = record.get("graph_plans") or {}
    if not graphs:
        return str(record.get("plan", record.get("backend")))
    return "per graph: " + ", ".join(f"{graph} {plan}" for graph, plan in sorted(graphs.items()))


def _ours(record: Mapping[str, Any]) -> dict[str, float]:
    return {batch: entry["images_per_s"] for batch, entry in record[kind_of(record)].items()}


def _pair(rates: Mapping[str, float | None]) -> tuple[float | None, float | None]:
    """(img/s at batch 1, img/s at the best batch)."""
    known = [r for r in rates.values() if r]
    return rates.get("1"), (max(known) if known else None)


def _num(value: float | None, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.2f}{suffix}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def table_row(record: Mapping[str, Any]) -> str:
    ours = _pair(_ours(record))
    cells = [model_label(record), f"`{plan_text(record)}`", f"{_num(ours[0])} / {_num(ours[1])}"]
    ratios = []
    for key, _, _ in README_BASELINES:
        theirs = _pair((record.get(key) or {}).get("per_batch") or {})
        cells.append(f"{_num(theirs[0])} / {_num(theirs[1])}")
        ratios.append(f"{_num(_ratio(ours[0], theirs[0]), '×')} / {_num(_ratio(ours[1], theirs[1]), '×')}")
    return "| " + " | ".join(cells + ratios) + " |"


def class_table(entry: Mapping[str, Any]) -> list[str]:
    records = entry["records"]
    cpu = records[0].get("machine", {})
    dates = sorted({str(r.get("recorded_utc", "date not recorded"))[:10] for r in records})
    # A heading ends the table above it and needs no blank line around it: the README is kept short.
    lines = [f"### {entry['label']}: {cpu.get('cpu', {}).get('model', 'CPU model not recorded')}, {cpu.get('cpus')} cores, "
             f"{' to '.join(dict.fromkeys((dates[0], dates[-1])))}",
             "| model | plan | sal-runtime | " + " | ".join(name for _, name, _ in README_BASELINES) + " | "
             + " | ".join(ratio for _, _, ratio in README_BASELINES) + " |",
             "|---|---|" + "---:|" * (1 + 2 * len(README_BASELINES))]
    by_kind = sorted(records, key=lambda r: KINDS.index(kind_of(r)))  # stable: the paper preset before the real bundle
    return lines + [table_row(r) for r in by_kind]


def readme_tables(entries: Sequence[Mapping[str, Any]]) -> str:
    """The README's section: a line on how to read it, then a table per class (newest first)."""
    lines = ["Images per second at batch 1 / at each side's best batch, torch measured in the same run (ratios: batch 1 "
             "against batch 1, best against best). ResNet-50 at 352² is the papers' preset, EfficientNet-Lite0 the bundle "
             "`make real` exports. Generated from `make bench`'s records by experiments/bench_readme.py; the records in full: "
             "[docs/speed.md](docs/speed.md).", ""]
    for entry in entries:
        lines += class_table(entry)
    return "\n".join(lines) + "\n"


__all__ = ["kind_of", "model_label", "plan_text", "readme_tables"]
