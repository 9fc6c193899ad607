"""The precision gate on photographs export never saw: the plan the runtime runs here against float32.

    python -m experiments.gate_check --engine runs/bench/bundle_coop --data ../shared/data/pascal-s \
        --split test --images 24 --json runs/bench/gate_test_coop.json

Export calibrates and gates on PASCAL-S's train split only. This checks — does not tune — the
plan the runtime runs for the bundle on this CPU: ``auto`` resolved by the runtime's own chooser
(salkit.runtime.plan.choose_plan, as ``sal-runtime bench`` and ``predict`` resolve it), so a
per-graph plan is judged as that mix, graph by graph on its engines, and a single plan as that
plan. It is judged on the first ``--images`` photographs of another split with the same gate
(export.precision.gate: final saliency maps mean |Δ| ≤ 0.003, max ≤ 0.05, entropy maps mean
≤ 0.01, QE-FPN residual), same seed, same latents, float32 on ort-cpu as the reference; only a plan
that is that reference on every graph is not run. The record names the plan as the bench record
does (``plan``, ``plan_reason``, ``graph_plans``). Exit code 0 whatever the verdict (the record
says it); 2 on bad input.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from salkit.base.atomic import atomic_write_text
from salkit.base.errors import SalkitError, report_user_errors

if TYPE_CHECKING:
    from salkit.runtime.plan import Probe


def split_images(data: Path, split: str, count: int) -> list[Path]:
    from salkit.base.images import is_image_path

    listing = data / f"{split}.txt"
    if not listing.is_file():
        raise SalkitError(f"--data {data} has no {split}.txt")
    ids = listing.read_text().split()
    folder = data / "img"
    by_stem = {p.stem: p for p in sorted(folder.glob("*")) if is_image_path(p)} if folder.is_dir() else {}
    files = [by_stem[i] for i in ids if i in by_stem][:count]
    if not files:
        raise SalkitError(f"none of the {len(ids)} ids of {listing} has an image in {folder}")
    return files


def check(engine: Path, data: Path, split: str, count: int, probe: "Probe | None" = None) -> dict:
    """The record for one bundle; ``probe`` times ``auto``'s candidates (the runtime's by default)."""
    from salkit.base.images import decode_image, preprocess
    from salkit.export.precision.gate import REFERENCE_PLAN, Gate
    from salkit.export.precision.mix import judge_mix
    from salkit.runtime.bundle import load_bundle
    from salkit.runtime.plan import choose_plan
    from salkit.runtime.predictor import probe_predict

    manifest = load_bundle(engine)
    plan = choose_plan(manifest, "auto", "auto", probe=probe or probe_predict)  # what bench and predict run here
    files = split_images(data, split, count)
    x = preprocess([decode_image(p) for p in files], manifest.input_size, manifest.mean, manifest.std)  # (B,3,S,S)
    started = time.perf_counter()
    every_graph = set(plan.graphs.values()) or {plan.name}
    if every_graph == {REFERENCE_PLAN}:
        verdict = {"passed": True, "reason": f"the plan is the float32 reference ({REFERENCE_PLAN}) on every graph"}
    else:
        verdict = judge_mix(Gate(manifest, x), plan.graphs) if plan.mixed else Gate(manifest, x).judge(plan.name)
        if all(p.endswith(":fp32") for p in every_graph):  # still a real check: another engine's float32 kernels
            verdict["reason"] += "; every graph runs float32 here, not all on the reference engine"
    return {"bundle": str(engine), "kind": manifest.model_kind, "plan": plan.name, "plan_reason": plan.reason,
            "graph_plans": dict(plan.graphs), "split": split, "images": len(files),
            "seconds": round(time.perf_counter() - started, 1), "verdict": verdict}


@click.command()
@click.option("--engine", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=Path), help="A root with img/ and <split>.txt.")
@click.option("--split", default="test", show_default=True)
@click.option("--images", "count", default=24, show_default=True, type=click.IntRange(1))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@report_user_errors
def main(engine: Path, data: Path, split: str, count: int, json_path: Path | None) -> None:
    record = check(engine, data, split, count)
    text = json.dumps(record, indent=2) + "\n"
    if json_path is not None:
        atomic_write_text(json_path, text)
    click.echo(text)


if __name__ == "__main__":
    main()
