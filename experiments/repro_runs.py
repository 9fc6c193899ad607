"""Training runs and model evaluation for the reproduction harness.

Runs go through the trainers' own entry points (``coop_cli.run`` / ``qefpn_cli.run``) with
arguments parsed by their click commands, so every run is exactly what the corresponding
``train-coop`` / ``train-qefpn`` command line would do. A finished run leaves ``done`` next to its
``last.pt``; an interrupted one is resumed from ``last.pt`` (bit-exact, per the trainers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salkit.base.atomic import atomic_write_text


@dataclass(frozen=True)
class Budget:
    name: str
    size: int  # training and evaluation side S (multiple of 32)
    n_train: int
    n_test: int
    seeds: tuple[int, ...]
    coop_epochs: int
    coop_batch: int
    qefpn_epochs: int
    qefpn_batch: int
    qefpn_solver_warmup: int  # steps trained unrolled before the solver takes over
    samples: int = 10  # latent samples at prediction (uncertainty)
    qefpn_iters: int | None = None  # forward and backward Broyden iterations; None = the tiny preset's 12
    data_seed: int = 0


BUDGETS: dict[str, Budget] = {
    # End to end in well under a minute: a harness check, not evidence.
    "smoke": Budget("smoke", size=32, n_train=4, n_test=3, seeds=(1, 2, 3), coop_epochs=1, coop_batch=4,
                    qefpn_epochs=1, qefpn_batch=4, qefpn_solver_warmup=0, samples=3, qefpn_iters=2),
    # For a loaded machine: every claim, three seeds, minutes rather than an hour; weak evidence.
    "quick": Budget("quick", size=32, n_train=32, n_test=12, seeds=(1, 2, 3), coop_epochs=2, coop_batch=8,
                    qefpn_epochs=1, qefpn_batch=8, qefpn_solver_warmup=2, samples=4, qefpn_iters=3),
    # About an hour on a quiet 2-core CPU.
    "full": Budget("full", size=64, n_train=320, n_test=64, seeds=(1, 2, 3), coop_epochs=8, coop_batch=8,
                   qefpn_epochs=3, qefpn_batch=8, qefpn_solver_warmup=40),
}


def prepare_data(out: Path, budget: Budget) -> tuple[Path, Path]:
    """Synthetic train and test sets (disjoint generator seeds); reused when already complete."""
    from salkit.train.data.synth import write_dataset

    folders = []
    for split, n, seed in (("train", budget.n_train, budget.data_seed), ("test", budget.n_test, budget.data_seed + 1000)):
        folder = out / "data" / f"{split}_{budget.size}_{n}_{seed}"
        if not (folder / "synth.json").is_file():
            write_dataset(folder, n=n, size=budget.size, seed=seed, force=folder.exists())
        folders.append(folder)
    return folders[0], folders[1]


def _finish(run_dir: Path) -> Path:
    atomic_write_text(run_dir / "done", "complete\n")
    return run_dir / "last.pt"


def train_coop(runs: Path, key: str, seed: int, budget: Budget, data: Path, *, scribble: bool = False,
               generator_only: str | None = None) -> Path:
    from salkit.train.coop import cli as coop_cli

    run_dir = runs / f"{key}_s{seed}"
    if (run_dir / "done").is_file():
        return run_dir / "last.pt"
    args = ["--data", str(data), "--out", str(run_dir), "--no-progress", "--grid-every", "0"]
    if (run_dir / "last.pt").is_file():
        args += ["--resume", str(run_dir / "last.pt")]
    else:
        args += ["--preset", "tiny", "--size", str(budget.size), "--epochs", str(budget.coop_epochs),
                 "--batch-size", str(budget.coop_batch), "--seed", str(seed), "--checkpoint-every", "25"]
        if scribble:
            args.append("--scribble")
        if generator_only:
            args += ["--generator-only", generator_only]
    ctx = coop_cli.main.make_context("train-coop", args)
    coop_cli.run(ctx.params)
    return _finish(run_dir)


def train_qefpn(runs: Path, key: str, seed: int, budget: Budget, data: Path, *, solver: str = "quasi",
                edge: str = "sobel", unrolled_layers: int | None = None) -> Path:
    from salkit.train.qefpn import cli as qefpn_cli

    run_dir = runs / f"{key}_s{seed}"
    if (run_dir / "done").is_file():
        return run_dir / "last.pt"
    args = ["--data", str(data), "--out", str(run_dir), "--preset", "tiny", "--no-progress", "--grid-every", "0",
            "--image-size", str(budget.size), "--epochs", str(budget.qefpn_epochs), "--batch-size", str(budget.qefpn_batch),
            "--seed", str(seed), "--solver", solver, "--edge", edge, "--checkpoint-every", "25",
            "--solver-warmup", str(0 if solver == "unrolled" else budget.qefpn_solver_warmup)]
    if budget.qefpn_iters is not None:
        args += ["--f-max-iter", str(budget.qefpn_iters), "--b-max-iter", str(budget.qefpn_iters)]
    if unrolled_layers is not None:
        args += ["--unrolled-layers", str(unrolled_layers)]
    if (run_dir / "last.pt").is_file():
        args += ["--resume", str(run_dir / "last.pt")]
    else:
        args += ["--force"]  # a folder without last.pt holds nothing worth keeping
    ctx = qefpn_cli.main.make_context("train-qefpn", args)
    qefpn_cli.run(**ctx.params)
    return _finish(run_dir)


def load_test(test_dir: Path, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Normalised images (B,3,S,S) and boolean masks (B,S,S) of the test set."""
    from salkit.train.data.dataset import SaliencyDataset

    dataset = SaliencyDataset(test_dir, size, labels="mask")
    items = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([item["image"] for item in items])
    masks = torch.stack([item["mask"] for item in items])[:, 0].numpy() > 0.5  # (B,S,S)
    return images, masks


def metrics(maps: np.ndarray, masks: np.ndarray, keys: tuple[str, ...]) -> dict[str, float]:
    """PySODMetrics scores (via ``evaluate_arrays``) of probability maps (B,S,S) against masks."""
    from salkit.base.metrics import evaluate_arrays

    results = evaluate_arrays([m.astype(np.float32) for m in maps], list(masks))
    return {k: float(results[k]) for k in keys}


def _batches(x: torch.Tensor, size: int = 16) -> list[torch.Tensor]:
    return [x[i:i + size] for i in range(0, x.shape[0], size)]


def coop_outputs(ckpt: Path, images: torch.Tensor, samples: int, seed: int) -> dict[str, np.ndarray]:
    """Maps (B,S,S) of one cooperative checkpoint: ``g_h0`` = G(X, 0), ``g_h`` = G(X, h) for one
    h ~ N(0, I), ``generator`` = mean of ``samples`` samples, ``coop`` = Ỹ after the energy's
    descent from it, ``entropy`` = predictive entropy of the samples."""
    from salkit.train.coop.predictor import load_coop, predict_tensor

    model = load_coop(ckpt)
    cfg = _coop_settings(ckpt)
    gen = torch.Generator().manual_seed(seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("g_h0", "g_h", "generator", "coop", "entropy")}
    for x in _batches(images):
        b, d = x.shape[0], model.generator.latent_dim
        zero = predict_tensor(model, x, torch.zeros(1, b, d), 0, cfg["energy_step"], uncertainty=False)
        one = predict_tensor(model, x, torch.randn(1, b, d, generator=gen), 0, cfg["energy_step"], uncertainty=False)
        full = predict_tensor(model, x, torch.randn(samples, b, d, generator=gen), cfg["langevin_steps"], cfg["energy_step"])
        parts["g_h0"].append(zero["generator"][:, 0].detach().numpy())
        parts["g_h"].append(one["generator"][:, 0].detach().numpy())
        parts["generator"].append(full["generator"][:, 0].detach().numpy())
        parts["coop"].append(full["saliency"][:, 0].detach().numpy())
        parts["entropy"].append(full["predictive"][:, 0].detach().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def _coop_settings(ckpt: Path) -> dict[str, Any]:
    from salkit.train.engine.checkpoint import load_checkpoint

    coop = load_checkpoint(ckpt, expect_kind="coop")["train_config"].get("coop", {})
    return {"langevin_steps": int(coop.get("langevin_steps", 5)), "energy_step": float(coop.get("energy_step", 0.4))}


def coop_refine(ckpt: Path, images: torch.Tensor, maps: np.ndarray) -> np.ndarray:
    """Noise-free Langevin descent on the checkpoint's energy from probability maps (B,S,S)."""
    from salkit.train.coop.predictor import load_coop, refine_tensor

    model = load_coop(ckpt)
    cfg = _coop_settings(ckpt)
    maps_t = torch.as_tensor(maps, dtype=torch.float32)[:, None]  # (B,1,S,S)
    out = [refine_tensor(model, x, m, cfg["langevin_steps"], cfg["energy_step"]).detach()
           for x, m in zip(_batches(images), _batches(maps_t), strict=True)]
    return torch.cat(out)[:, 0].numpy()


def qefpn_outputs(ckpt: Path, images: torch.Tensor) -> dict[str, np.ndarray]:
    """``saliency`` (B,S,S) and per-image relative ``residual`` ‖f(z*) − z*‖/‖z*‖ (B,)."""
    from salkit.train.qefpn.predict import QEFPNReferencePredictor

    predictor = QEFPNReferencePredictor.from_checkpoint(ckpt)
    saliency, residual = [], []
    for x in _batches(images):
        out = predictor.predict_tensor(x.numpy())
        saliency.append(out["saliency"][:, 0])
        residual.append(out["residual"])
    return {"saliency": np.concatenate(saliency), "residual": np.concatenate(residual)}


def degrade(masks: np.ndarray, seed: int) -> np.ndarray:
    """A deliberately bad version of the ground truth: blurred (σ = S/32), shifted by S/16, with
    Gaussian noise (σ 0.15) and one erased box per image, clipped to [0, 1]."""
    from scipy.ndimage import gaussian_filter, shift

    rng = np.random.default_rng(seed)
    b, s, _ = masks.shape
    out = np.empty((b, s, s), dtype=np.float32)
    for i, mask in enumerate(masks.astype(np.float32)):
        m = gaussian_filter(mask, sigma=s / 32.0)
        m = shift(m, (s / 16.0, -s / 16.0), order=1, mode="nearest")
        y0, x0 = rng.integers(0, s // 2, size=2)
        m[y0:y0 + s // 4, x0:x0 + s // 4] = 0.0
        out[i] = np.clip(m + rng.normal(0.0, 0.15, size=m.shape), 0.0, 1.0)
    return out


def save_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
