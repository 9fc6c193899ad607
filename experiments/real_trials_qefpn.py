"""QE-FPN recipe trials: does the QE-FPN learn more per CPU minute from a trunk G(X) already tuned to saliency?

    python experiments/real_trials_qefpn.py [--out runs/trials2] [--images 800]

Two train-qefpn runs (`--preset lite`, 224², 1 thread each, side by side) on the first ``--images`` photos of
the G(X) trial's training ids: one from the ImageNet trunk, one from the trunk of the G(X) trial
("lite G(X) 224px + IoU, 2400 photos", trained on a superset of those photos; `--backbone-weights CHECKPOINT`).
Both are judged like the coop trials: on the first 200 of make real's held-out DUTS-TR photos, maps resized
back to each photo's size. The test split is never read. The rows join ``<out>/trials.json`` (make real's
report shows them with the coop trials).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from salkit.base.atomic import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling modules
from real_train import BIN  # noqa: E402 — after the sys.path line above

GX_TRIAL = "lite_GX_224px_+_IoU,_2400_photos"
HELD_JUDGED = 200


def judge(checkpoint: Path, data: Path, held: Path) -> dict[str, float]:
    import numpy as np
    import torch

    from salkit.base.images import decode_image, preprocess, resize_map
    from salkit.base.layout import read_mask_bool, split_samples
    from salkit.base.metrics import evaluate_arrays
    from salkit.train.qefpn.predict import QEFPNReferencePredictor

    torch.set_num_threads(1)
    samples = split_samples(data, held)[:HELD_JUDGED]
    predictor = QEFPNReferencePredictor.from_checkpoint(checkpoint)
    maps, gts = [], []
    for sample in samples:
        photo = decode_image(sample.image)
        out = predictor.predict_tensor(preprocess([photo], predictor.image_size))["saliency"][0, 0]
        maps.append(np.clip(resize_map(out, photo.shape[:2]), 0.0, 1.0))
        gts.append(read_mask_bool(sample.mask))
    metrics = evaluate_arrays(maps, gts)
    return {m: round(float(metrics[m]), 4) for m in ("mae", "s_measure", "max_f", "mean_e")}


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/trials2"))
@click.option("--data", type=click.Path(path_type=Path), default=Path("../shared/data/duts-tr"))
@click.option("--images", type=int, default=800)
def main(out: Path, data: Path, images: int) -> None:
    fit = out / f"qefpn_fit_{images}.txt"
    fit.write_text("".join((out / GX_TRIAL / "fit.txt").read_text().splitlines(keepends=True)[:images]))
    runs = {"imagenet": "imagenet", "G(X) trunk": str(out / GX_TRIAL / "coop" / "last.pt")}
    warmup = str(round(images / 8 * 250 / 300))  # make real's share of unrolled warm-up steps (250 of 300)

    def one(name: str) -> dict[str, object]:
        folder = out / f"qefpn_{images}_{name.replace(' ', '_').replace('(', '').replace(')', '')}"
        if not (folder / "last.pt").is_file() or not (folder / "finished").is_file():
            cmd = [str(BIN / "train-qefpn"), "--data", str(data), "--split", str(fit), "--out", str(folder), "--force",
                   "--preset", "lite", "--size", "224", "--crop", "0.75", "--epochs", "1", "--batch-size", "8",
                   "--solver-warmup", warmup, "--backbone-weights", runs[name], "--grid-every", "0", "--no-progress"]
            child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
            _, status, usage = os.wait4(child.pid, 0)  # this trial's own CPU time
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(child.stderr.read()[-2000:] if child.stderr else "train-qefpn failed")
            (folder / "finished").write_text(json.dumps({"cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}))
        finished = json.loads((folder / "finished").read_text() or "{}")
        return {"name": f"lite QE-FPN 224px from {name}, {images} photos", "epochs": 1, "args": ["--backbone-weights", name],
                "train_cpu_s": finished.get("cpu_s") if isinstance(finished, dict) else None, "n_held": HELD_JUDGED,
                "yhat": judge(folder / "last.pt", data, out / "held.txt"), "no_energy": "— (QE-FPN: no energy)"}

    with ThreadPoolExecutor(2) as pool:
        rows = list(pool.map(one, runs))
    table = out / "trials.json"
    kept = [r for r in json.loads(table.read_text()) if r["name"] not in {row["name"] for row in rows}] if table.is_file() else []
    atomic_write_text(table, json.dumps([*kept, *rows], indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(rows, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
