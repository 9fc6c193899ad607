"""Algorithm 2 — cooperative learning while recovering — as ``ScribbleTrainer``, a ``CoopTrainer``
whose step is the one below.

A scribble Y′ labels a few pixels (1 = foreground, 2 = background, 0 = unknown; O = the labelled
ones). Per step, for a batch (X, Y′):

1. Recovery. h′: K Langevin steps on −log p(Y′, h | X) from a fresh h′₀ ~ N(0, I), with the
   likelihood restricted to O (``scribble_langevin``); Ŷ′ = G(X, h′); Ỹ′: K Langevin steps
   on U from Ŷ′ with the annotated pixels held at their labels. Ỹ′ is the recovered label.
2. Algorithm 1's cooperative sampling: ĥ ~ N(0, I), Ŷ = G(X, ĥ), Ỹ by Langevin on U, h̃ by
   Langevin on −log p(Ỹ, h | X) (all pixels: Ỹ is complete).
3. θ (energy): minimise U(Ỹ′, X) − U(Ỹ, X) — the recovered labels play the data.
4. α (generator): ‖G(X, h̃) − Ỹ‖²/(2σ²) (mean over pixels) + λ·BCE(G(X, h̃), Y′) over the
   **annotated pixels only** (mean over them), λ constant at ``ce_weight`` by default: the
   energy's data are the model's own recoveries here, so the scribble CE is the one anchor to
   the labels and letting it fade made the recovery drift (docs/weak-supervision.md, measured);
   ``ce_decay=True`` restores Algorithm 1's decay to 0.

How unknown pixels enter: never through a label. The generator sees them only through Ỹ, the
energy's revision of its own sample, and the energy learned what labels look like from Ỹ′ —
the generator's guess completed by the energy and pinned to the scribble where one was drawn.
The CE term is the only direct use of the scribble in α's update and it stays on the strokes: a
CE on the recovered labels of unknown pixels would train G on its own guesses.
Labels Y′ enter in logit space like ground truth in Algorithm 1 (``mask_to_logits``: ±9.21).

The encoder runs once per step (with gradients); the h′, Ŷ′, Ŷ and h̃ passes reuse its features.
A batch row with no annotated pixel (the dataset drops those up front; this guards direct use)
contributes nothing: its h′ is a prior sample, its CE weight and its energy-loss weight are 0,
and it is counted in the ``unannotated`` column. Never a division by zero.

The dataset's hidden ground truth (``hidden_gt``, when the folder has ``gt/``) only feeds the
recovery metrics logged per step (rank 0's batch): MAE and S-measure (PySODMetrics, no min-max
scaling) of Ỹ′, and MAE of Ỹ′ over the unknown pixels alone (the annotated ones are exact by
construction). ``dump_recovered`` N writes ``<out>/recovered/step_XXXXXXX.png`` every N steps:
image | scribble (white fg, black bg, grey unknown) | Ỹ′ | hidden gt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from salkit.train.coop.langevin import Chain
from salkit.train.coop.scribble_langevin import infer_latent_observed, recover_saliency
from salkit.train.coop.trainer import CoopSettings, CoopTrainer, mask_to_logits, unnormalise
from salkit.train.engine.logs import save_grid

SCRIBBLE_UNKNOWN, SCRIBBLE_FG, SCRIBBLE_BG = 0, 1, 2


@dataclass
class ScribbleOptions:
    dump_recovered: int = 0  # steps between PNGs of the recovered labels; 0 = never
    ce_decay: bool = False  # False: λ stays at ce_weight (measured better here); True: Algorithm 1's decay to 0


class ScribbleTrainer(CoopTrainer):
    """``CoopTrainer`` on (image, scribble) batches: Algorithm 2's step, everything else shared."""

    supervision = "scribble"

    def __init__(self, model: Any, dataset: Any, options: Any, settings: CoopSettings,
                 scribble: ScribbleOptions | None = None) -> None:
        super().__init__(model, dataset, options, settings)
        self.scribble = scribble or ScribbleOptions()

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return scribble_step(self, batch)


def scribble_targets(scribble: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """scribble (B,1,S,S) int in {0,1,2} → (observed O, labels) as float {0,1} maps of the same shape."""
    observed = (scribble != SCRIBBLE_UNKNOWN).float()
    labels = (scribble == SCRIBBLE_FG).float()
    return observed, labels


def scribble_step(trainer: ScribbleTrainer, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    s = trainer.settings
    x = batch["image"]
    observed, labels = scribble_targets(batch["scribble"])
    target = mask_to_logits(labels)  # Y′ in logit space; read only where observed
    annotated = (observed.flatten(1).sum(1) > 0).float()  # (B,)
    generator = trainer.model.generator
    feats = trainer.generator_dp(x)  # encode once, with gradients, train-mode BN
    frozen = [f.detach() for f in feats]
    d = generator.latent_dim

    h0 = torch.randn(x.shape[0], d, device=x.device)
    h_prime = _checked(trainer, "h′ (recovery)", infer_latent_observed(
        generator.decode, frozen, target, observed, h0, s.langevin_steps, s.latent_step, s.sigma, s.langevin_noise))
    with torch.no_grad():
        y_rec_hat = generator.decode(frozen, h_prime)
    y_rec = _recover(trainer, y_rec_hat, x, observed, target)

    h_hat = torch.randn(x.shape[0], d, device=x.device)
    with torch.no_grad():
        y_hat = generator.decode(frozen, h_hat)
    y_tilde = trainer._revise_saliency(y_hat, x)
    h_tilde = trainer._revise_latent(feats, y_tilde, h_hat)

    gap = trainer._update_energy(x, y_rec, y_tilde, weights=annotated)
    constant = None if trainer.scribble.ce_decay else s.ce_weight
    regression, ce, lam = trainer._update_generator(feats, h_tilde, y_tilde, labels, ce_mask=observed, ce_weight=constant,
                                                    image=x)

    scribble_map = _scribble_picture(batch["scribble"])
    trainer._last = {"image": x, "mask": scribble_map, "y_hat": y_hat, "y_tilde": y_tilde, "y_rec": y_rec}
    scalars = {"energy_gap": gap, "regression": regression, "ce": ce, "lambda": lam,
               "annotated": float(observed.mean()), "unannotated": float((1 - annotated).sum())}
    if "hidden_gt" in batch:
        scalars.update(recovery_metrics(torch.sigmoid(y_rec), batch["hidden_gt"], observed))
    _maybe_dump(trainer, x, scribble_map, torch.sigmoid(y_rec), batch.get("hidden_gt"))
    return scalars


def _checked(trainer: ScribbleTrainer, name: str, chain: Chain) -> torch.Tensor:
    if chain.bad_step is not None:
        trainer.flag_divergence(f"the Langevin chain on {name} turned NaN/inf at Langevin step {chain.bad_step}")
    return chain.value


def _recover(trainer: ScribbleTrainer, y: torch.Tensor, x: torch.Tensor, observed: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
    s, energy = trainer.settings, trainer.model.energy
    energy.eval()  # as for Algorithm 1's chain on Y: per-image chains, running statistics untouched
    try:
        chain = recover_saliency(energy, y, x, observed, target, s.langevin_steps, s.energy_step, s.langevin_noise)
    finally:
        energy.train()
    return _checked(trainer, "Ỹ′ (recovery)", chain)


def recovery_metrics(recovered: torch.Tensor, gt: torch.Tensor, observed: torch.Tensor) -> dict[str, float]:
    """MAE and S-measure of recovered probabilities (B,1,S,S) against binary gt, and MAE on unknown pixels."""
    import py_sod_metrics as sod

    mae, sm = sod.MAE(), sod.Smeasure()
    pred = recovered.detach().double().cpu().numpy()[:, 0]  # (B,1,S,S) → (B,S,S)
    truth = gt.detach().cpu().numpy()[:, 0] > 0.5
    for p, g in zip(pred, truth, strict=True):
        mae.step(pred=p, gt=g, normalize=False)
        sm.step(pred=p, gt=g, normalize=False)
    unknown = observed.detach().cpu().numpy()[:, 0] == 0
    errors = np.abs(pred - truth)[unknown]
    return {
        "recovery_mae": float(mae.get_results()["mae"]),
        "recovery_s": float(sm.get_results()["sm"]),
        "recovery_mae_unknown": float(errors.mean()) if errors.size else 0.0,
    }


def _scribble_picture(scribble: torch.Tensor) -> torch.Tensor:
    """(B,1,S,S) labels → grey levels: foreground 1, background 0, unknown 0.5."""
    picture = torch.full(scribble.shape, 0.5, device=scribble.device)
    picture[scribble == SCRIBBLE_FG] = 1.0
    picture[scribble == SCRIBBLE_BG] = 0.0
    return picture


def _maybe_dump(trainer: ScribbleTrainer, x: torch.Tensor, scribble_map: torch.Tensor, recovered: torch.Tensor,
                gt: torch.Tensor | None) -> None:
    every = trainer.scribble.dump_recovered
    step = trainer.step + 1  # the engine counts this step after train_step returns
    if not every or step % every or not trainer.dist.is_main:
        return
    panels = [unnormalise(x), scribble_map, recovered] + ([gt] if gt is not None else [])
    save_grid(panels, trainer.out / "recovered" / f"step_{step:07d}.png", max_rows=x.shape[0])
