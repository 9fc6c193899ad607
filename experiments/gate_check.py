"""The precision gate on photographs export never saw: the bundle's recorded plan against float32.

    python -m experiments.gate_check --engine runs/bench/bundle_coop --data ../shared/data/pascal-s \
        --split test --images 24 --json runs/bench/gate_test_coop.json

Export calibrates and gates on PASCAL-S's train split only. This checks — does not tune — the
plan it chose (``manifest.precision_choice``) on the first ``--images`` photographs of another
split with the same gate (export.precision.gate: final saliency maps mean |Δ| ≤ 0.003, max ≤ 0.05,
entropy maps mean ≤ 0.01, QE-FPN residual), same seed, same latents, float32 on ort-cpu as the
reference. Exit code 0 whatever the verdict (the record says it); 2 on bad input.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from salkit.base.atomic import atomic_write_text
from salkit.base.errors import SalkitError, report_user_errors


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


def check(engine: Path, data: Path, split: str, count: int) -> dict:
    from salkit.base.images import decode_image, preprocess
    from salkit.export.precision.gate import REFERENCE_PLAN, Gate
    from salkit.runtime.bundle import load_bundle

    manifest = load_bundle(engine)
    plan = manifest.precision_choice.get("plan") or REFERENCE_PLAN
    files = split_images(data, split, count)
    x = preprocess([decode_image(p) for p in files], manifest.input_size, manifest.mean, manifest.std)  # (B,3,S,S)
    started = time.perf_counter()
    verdict = {"passed": True, "reason": "the recorded plan is the float32 reference itself"}
    if plan != REFERENCE_PLAN:
        verdict = Gate(manifest, x).judge(plan)
    return {"bundle": str(engine), "kind": manifest.model_kind, "plan": plan, "split": split, "images": len(files),
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
