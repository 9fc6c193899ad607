"""Does the cooperative energy refine maps? Train, probe and evaluate on PASCAL-S photographs.

Run from the repository root, under ``nice`` (the machine is shared)::

    nice -n 10 .venv/bin/python experiments/energy_diag.py train --name base
    nice -n 10 .venv/bin/python experiments/energy_diag.py train --name gx --set generator_only=deterministic
    nice -n 10 .venv/bin/python experiments/energy_diag.py eval --name base --other gx [--split val|test]
    .venv/bin/python experiments/energy_diag.py plots --names base,... [--sweep base]

``train`` trains the cooperative model (``tiny`` preset, CoopTrainer) on the train part and every
``--probe-every`` steps writes one row of ``energy_probe.probe`` on a fixed batch of held-out photos
(``diag.csv``). ``--set key=value`` overrides a ``CoopSettings`` field (the trainer's options).
``eval`` scores Ŷ, Ỹ, the other model's maps before/after the energy's descent and a degraded ground
truth before/after, at each photo's own size (PySODMetrics, the standard protocol), and sweeps the
test-time δ and K (``eval_<split>.json``). ``plots`` writes the PNGs in docs/img/.
Runs live in ``runs/energy/<name>/`` (git-ignored). Data: energy_data.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from energy_data import DEFAULT_ROOT, Pairs, load_split
from energy_probe import probe

RUNS = Path("runs/energy")
METRICS = ("mae", "s_measure", "mean_e", "max_f")
SWEEP_STEPS = (0.1, 0.4, 1.0, 2.0, 4.0, 8.0)
SWEEP_K = (1, 5, 20)


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def degraded_maps(masks: torch.Tensor, seed: int) -> torch.Tensor:
    from repro_runs import degrade

    return torch.from_numpy(degrade(masks[:, 0].numpy() > 0.5, seed))[:, None]  # (B,1,S,S)


def train(args: argparse.Namespace) -> None:
    from salkit.train.coop.cli import SETTING_KEYS, TRAIN_PRESETS
    from salkit.train.coop.trainer import CoopSettings, CoopTrainer
    from salkit.train.engine.registry import create_model
    from salkit.train.engine.trainer import LoopOptions

    out = RUNS / args.name
    if (out / "done").is_file():
        print(f"{out} is done")
        return
    overrides = dict(kv.split("=", 1) for kv in args.set)
    preset = {k: v for k, v in TRAIN_PRESETS["tiny"].items() if k in SETTING_KEYS}
    settings = CoopSettings(**{**preset, **{k: _value(v) for k, v in overrides.items()}})
    torch.set_num_threads(args.threads)
    data = load_split(args.data, "train", args.size)
    held = load_split(args.data, "val", args.size)
    x, masks = held.images[:args.probe_size], held.masks[:args.probe_size]
    degraded = degraded_maps(masks, seed=7)
    rows: list[dict[str, float]] = []

    class ProbedTrainer(CoopTrainer):
        def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
            scalars = super().train_step(batch)
            if (self.step + 1) % args.probe_every == 0 or self.step == 0:
                s = self.settings
                rows.append({"step": self.step + 1, **scalars,
                             **probe(self.model, x, masks, degraded, s.langevin_steps, s.energy_step)})
            return scalars

    torch.manual_seed(args.seed)
    model = create_model("coop", preset="tiny", image_size=args.size)
    loop = LoopOptions(out=str(out), epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                       progress=False, grid_every=0, checkpoint_every=10**9)
    trainer = ProbedTrainer(model, Pairs(data), loop, settings)
    trainer.config["cli"] = {"preset": "tiny", "size": args.size, "set": overrides}
    started = time.perf_counter()
    trainer.fit()
    with open(out / "diag.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[-1]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "done").write_text(json.dumps({"seconds": time.perf_counter() - started, "steps": trainer.step,
                                          "settings": settings.__dict__}, indent=1) + "\n")
    print(f"{args.name}: {trainer.step} steps in {time.perf_counter() - started:.0f} s; last probe {rows[-1]}")


def _settings(ckpt: Path) -> dict:
    from salkit.train.engine.checkpoint import load_checkpoint

    return load_checkpoint(ckpt, expect_kind="coop")["train_config"]["coop"]


def _score(maps: torch.Tensor, full_masks: list[np.ndarray]) -> dict[str, float]:
    from salkit.base.metrics import evaluate_arrays

    results = evaluate_arrays([m[0].numpy().astype(np.float32) for m in maps], full_masks)
    return {k: float(results[k]) for k in METRICS}


def _quick(maps: torch.Tensor, full_masks: list[np.ndarray]) -> dict[str, float]:
    """MAE and S-measure only, by the same protocol as ``_score`` (resize to the photo, min-max)."""
    import py_sod_metrics as sod

    from salkit.base.images import resize_map

    mae, sm = sod.MAE(), sod.Smeasure()
    for m, gt in zip(maps, full_masks, strict=True):
        pred = np.clip(resize_map(m[0].numpy(), gt.shape).astype(np.float64), 0.0, 1.0)
        low, high = pred.min(), pred.max()
        pred = (pred - low) / (high - low) if high > low else pred
        mae.step(pred=pred, gt=gt, normalize=False)
        sm.step(pred=pred, gt=gt, normalize=False)
    return {"mae": float(mae.get_results()["mae"]), "s_measure": float(sm.get_results()["sm"])}


def _batched(fn, *tensors: torch.Tensor, size: int = 32) -> torch.Tensor:
    return torch.cat([fn(*(t[i:i + size] for t in tensors)) for i in range(0, tensors[0].shape[0], size)])


def _other_maps(path: Path, images: torch.Tensor, size: int) -> torch.Tensor:
    """Probability maps (N,1,size,size) of another checkpoint: a QE-FPN, or a coop run's G(X, 0)."""
    from salkit.train.coop.predictor import load_coop, predict_tensor
    from salkit.train.engine.checkpoint import load_checkpoint
    from salkit.train.qefpn.predict import QEFPNReferencePredictor

    kind = load_checkpoint(path)["model"]["kind"]
    if kind == "qefpn":
        predictor = QEFPNReferencePredictor.from_checkpoint(path)
        maps = _batched(lambda x: torch.from_numpy(predictor.predict_tensor(x.numpy())["saliency"]), images)
    else:
        other = load_coop(path)
        zero = torch.zeros(1, images.shape[0], other.latent_dim)  # (1,N,d): h = 0
        maps = _batched(lambda x, z: predict_tensor(other, x, z.transpose(0, 1), 0, 0.4, uncertainty=False)["generator"],
                        images, zero.transpose(0, 1)).detach()
    if maps.shape[-1] != size:
        maps = torch.nn.functional.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)
    return maps.clamp(0.0, 1.0)


def evaluate(args: argparse.Namespace) -> None:
    from salkit.train.coop.predictor import load_coop, predict_tensor, refine_tensor

    torch.set_num_threads(args.threads)
    ckpt = args.ckpt or RUNS / args.name / "last.pt"
    s = _settings(ckpt)
    model = load_coop(ckpt)
    split = load_split(args.data, args.split, model.image_size)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(10, split.images.shape[0], model.latent_dim, generator=gen)  # (N,B,d)
    k, step = s["langevin_steps"], s["energy_step"]
    y_hat = _batched(lambda x, z: predict_tensor(model, x, z.transpose(0, 1), 0, step, uncertainty=False)["generator"],
                     split.images, latents.transpose(0, 1)).detach()
    starts = {"coop": y_hat, "degraded": degraded_maps(split.masks, seed=11)}
    for label, path in (("other", args.other and RUNS / args.other / "last.pt"), ("gx", args.gx), ("qefpn", args.qefpn)):
        if path:
            starts[label] = _other_maps(Path(path), split.images, model.image_size)

    def refine(maps: torch.Tensor, steps: int, size: float) -> torch.Tensor:
        return _batched(lambda x, m: refine_tensor(model, x, m, steps, size).detach(), split.images, maps)

    report: dict = {"name": args.name, "ckpt": str(ckpt), "split": args.split, "settings": s, "rows": {}, "sweep": []}
    for name, maps in starts.items():
        revised = refine(maps, k, step)
        before, after = _score(maps, split.full_masks), _score(revised, split.full_masks)
        report["rows"][name] = {"before": before, "after": after, "delta": {m: after[m] - before[m] for m in METRICS},
                                "mean_abs_delta": float((revised - maps).abs().mean())}
        print(name, json.dumps(report["rows"][name]))
    if args.sweep:
        for name in [n for n in ("coop", "other", "gx", "qefpn") if n in starts]:
            for steps in SWEEP_K:
                for size in SWEEP_STEPS:
                    revised = refine(starts[name], steps, size)
                    before, after = _quick(starts[name], split.full_masks), _quick(revised, split.full_masks)
                    report["sweep"].append({"start": name, "K": steps, "delta": size, "mae": after["mae"],
                                            "s_measure": after["s_measure"], "mae_start": before["mae"],
                                            "s_start": before["s_measure"],
                                            "mean_abs_delta": float((revised - starts[name]).abs().mean())})
                    print(report["sweep"][-1])
    (RUNS / args.name).mkdir(parents=True, exist_ok=True)
    (RUNS / args.name / f"eval_{args.split}.json").write_text(json.dumps(report, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--threads", type=int, default=1)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--name", required=True)
    t.add_argument("--set", action="append", default=[], help="CoopSettings field=value (JSON value)")
    t.add_argument("--size", type=int, default=64)
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--probe-every", type=int, default=25)
    t.add_argument("--probe-size", type=int, default=32)
    e = sub.add_parser("eval")
    e.add_argument("--name", required=True)
    e.add_argument("--ckpt", type=Path, default=None, help="checkpoint to evaluate [runs/energy/NAME/last.pt]")
    e.add_argument("--other", default=None, help="run whose G(X, 0) maps the energy refines (e.g. gx)")
    e.add_argument("--gx", type=Path, default=None, help="coop checkpoint (G(X) baseline) whose G(X, 0) maps it refines")
    e.add_argument("--qefpn", type=Path, default=None, help="QE-FPN checkpoint whose maps the energy refines")
    e.add_argument("--split", choices=("val", "test"), default="val")
    e.add_argument("--sweep", action="store_true", help="also sweep δ and K at test time")
    p = sub.add_parser("plots")
    p.add_argument("--names", default="")
    p.add_argument("--finetune", default=None, help="an energy-only run (its log.csv) for energy_finetune.png")
    p.add_argument("--sweep", default=None)
    p.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    if args.command == "plots":
        from energy_plots import plots

        plots([n for n in args.names.split(",") if n], args.sweep, RUNS, args.out, args.finetune)
    else:
        {"train": train, "eval": evaluate}[args.command](args)


if __name__ == "__main__":
    main()
