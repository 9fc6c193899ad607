"""The energy diagnostics' PNGs (small, for docs/img/), from runs/energy/<name>/diag.csv and eval_val.json.

* ``energy_separation.png`` — U on the ground truth, on Ŷ, on a degraded ground truth and on Ỹ
  over training, one panel per run, with the share of images ranked correctly (U(gt) lowest).
* ``energy_step.png`` — per run: RMS ∂U/∂Y, the drift of one step δ²/2·‖∂U/∂Y‖ against the
  map's own scale (RMS of Ŷ's logits) and the chain's noise δ, on a log scale; and the cosine
  between a descent step and the way to the truth.
* ``energy_sweep_<name>.png`` — test-time δ and K on held-out photos: the change of MAE and
  S-measure (standard protocol) that the descent makes to Ŷ and to another model's maps.
* ``energy_finetune.png`` — the energy-only fine-tune (``train-coop --energy-only``) from its
  log.csv: how much the descent lowers the BCE vs the truth, and the mean |Δp| of the descent, per step (running means over 10 steps).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path


def _read(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


def _figure(n: int, rows: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, n, figsize=(3.2 * n, 2.6 * rows), squeeze=False, dpi=80)
    return plt, fig, axes


def separation(names: list[str], runs: Path, out: Path) -> None:
    plt, fig, axes = _figure(len(names), 2)
    for i, name in enumerate(names):
        d = _read(runs / name / "diag.csv")
        ax = axes[0][i]
        for key, label in (("U_gt", "ground truth"), ("U_hat", "Ŷ (G sample)"), ("U_degraded", "degraded GT"),
                           ("U_tilde", "Ỹ (after K steps)")):
            ax.plot(d["step"], d[key], label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax2 = axes[1][i]
        ax2.plot(d["step"], d["sep_hat"], label="U(Ŷ) > U(gt)")
        ax2.plot(d["step"], d["sep_degraded"], label="U(degraded) > U(gt)")
        ax2.set_ylim(-0.05, 1.05)
        ax2.set_xlabel("step", fontsize=8)
        ax2.tick_params(labelsize=7)
    axes[0][0].set_ylabel("mean U", fontsize=8)
    axes[1][0].set_ylabel("share of images", fontsize=8)
    axes[0][0].legend(fontsize=6)
    axes[1][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "energy_separation.png")
    plt.close(fig)


def step_scale(names: list[str], runs: Path, out: Path) -> None:
    plt, fig, axes = _figure(len(names), 2)
    for i, name in enumerate(names):
        d = _read(runs / name / "diag.csv")
        ax = axes[0][i]
        ax.semilogy(d["step"], d["scale_hat"], label="map scale: RMS logit of Ŷ")
        ax.semilogy(d["step"], d["noise"], label="noise per step δ")
        ax.semilogy(d["step"], d["grad_hat"], label="RMS ∂U/∂Y at Ŷ")
        ax.semilogy(d["step"], d["disp_hat"], label="drift per step δ²/2·RMS ∂U/∂Y")
        ax.semilogy(d["step"], d["delta_hat"], label="mean |Δp| after K steps")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax2 = axes[1][i]
        ax2.plot(d["step"], d["cos_hat"], label="cos(descent, truth − Ŷ)")
        ax2.plot(d["step"], [a - b for a, b in zip(d["mae_hat"], d["mae_tilde"], strict=True)], label="MAE(Ŷ) − MAE(Ỹ)")
        ax2.axhline(0.0, color="grey", lw=0.5)
        ax2.set_xlabel("step", fontsize=8)
        ax2.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=6)
    axes[1][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "energy_step.png")
    plt.close(fig)


def sweep(name: str, runs: Path, out: Path) -> None:
    report = json.loads((runs / name / "eval_val.json").read_text())
    starts = sorted({r["start"] for r in report["sweep"]})
    plt, fig, axes = _figure(len(starts), 2)
    for i, start in enumerate(starts):
        for k in sorted({r["K"] for r in report["sweep"]}):
            rows = [r for r in report["sweep"] if r["start"] == start and r["K"] == k]
            deltas = [r["delta"] for r in rows]
            axes[0][i].semilogx(deltas, [r["mae"] - r["mae_start"] for r in rows], marker="o", label=f"K = {k}")
            axes[1][i].semilogx(deltas, [r["s_measure"] - r["s_start"] for r in rows], marker="o", label=f"K = {k}")
        for ax in (axes[0][i], axes[1][i]):
            ax.axhline(0.0, color="grey", lw=0.5)
            ax.tick_params(labelsize=7)
        label = {"coop": "Ŷ", "qefpn": "QE-FPN", "gx": "G(X)", "other": "G(X)"}.get(start, start)
        axes[0][i].set_title(f"{name}: descent from {label}", fontsize=9)
        axes[1][i].set_xlabel("test-time δ", fontsize=8)
    axes[0][0].set_ylabel("Δ MAE (< 0 helps)", fontsize=8)
    axes[1][0].set_ylabel("Δ S-measure (> 0 helps)", fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / f"energy_sweep_{name}.png")
    plt.close(fig)


def _running(values: list[float], width: int = 10) -> list[float]:
    return [sum(values[max(0, i - width + 1):i + 1]) / (i + 1 - max(0, i - width + 1)) for i in range(len(values))]


def finetune(name: str, runs: Path, out: Path) -> None:
    d = _read(runs / name / "log.csv")
    plt, fig, axes = _figure(2)
    gain = [a - b for a, b in zip(d["start_bce"], d["descent_bce"], strict=True)]
    axes[0][0].plot(d["step"], _running(gain))
    axes[0][0].axhline(0.0, color="grey", lw=0.5)
    axes[0][0].set_ylabel("BCE(start) − BCE(after K steps)", fontsize=8)
    axes[0][1].plot(d["step"], _running(d["moved"]))
    axes[0][1].axhline(0.005, color="grey", lw=0.5, ls="--")
    axes[0][1].set_ylabel("mean |Δp| of the descent", fontsize=8)
    for ax in axes[0]:
        ax.set_xlabel("fine-tune step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"energy-only fine-tune ({name}), training batches", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "energy_finetune.png")
    plt.close(fig)


def plots(names: list[str], sweep_names: str | None, runs: Path, out: Path, finetune_name: str | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if names:
        separation(names, runs, out)
        step_scale(names, runs, out)
    for name in (sweep_names or "").split(","):
        if name:
            sweep(name, runs, out)
    if finetune_name:
        finetune(finetune_name, runs, out)
