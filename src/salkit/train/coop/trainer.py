"""Algorithm 1 of the cooperative saliency paper: LVM generator and EBM trained together.

Per step, for a batch (X, Y):

1. ĥ ~ N(0, I); Ŷ = G(X, ĥ) (logits). The encoder runs once, with gradients, and its features
   serve every decoder pass of the step (the latent never reaches the encoder).
2. Ỹ: K Langevin steps on U(·, X) from Ŷ (Eq. 2, step δ_U, with noise).
3. h̃: K Langevin steps on −log p(Ỹ, h | X) from ĥ (Eq. 7, step δ_G, observation σ).
4. θ (energy, Eq. 5): minimise mean U(Y, X) − mean U(Ỹ, X) — data energy down, revised up.
   Data and revised maps go through U as one batch so batch-norm normalises both alike.
   Optional (not in the paper, off by default): + α·mean(U²) over both sets (``energy_reg``),
   the usual cure for an energy scale that grows without bound.
5. α (generator, Eq. 8): minimise ‖G(X, h̃) − Ỹ‖²/(2σ²) (mean over pixels) + λ·BCE(G(X, h̃), Y),
   λ decaying linearly from ``ce_weight`` to 0 over the run (``ce_weight_at``).

Y lives in logit space throughout (docs/architecture.md); the data map Y enters U as the
logit of the mask clipped to [1e-4, 1 − 1e-4], so sigmoid gives the mask back.

Batch norm during Langevin: U runs in **eval** mode (running statistics) for the Y chains.
That makes each chain independent of the rest of the batch (batched revision = per-image
revision), keeps the K extra passes out of the running statistics, and descends the same
function the exported runtime descends at prediction time. The θ update runs U in train mode.
The generator's BN lives only in the encoder, which runs once per step in train mode.

Langevin uses ``torch.autograd.grad`` with respect to Y or h only; optimisers zero gradients
(``set_to_none``) right before their own backward pass, so no Langevin gradient reaches an update.

Two subclasses replace only the step and reuse the chains and updates below:
``scribble.ScribbleTrainer`` (Algorithm 2, learning while recovering from partial labels,
docs/weak-supervision.md) and ``baselines.GeneratorOnlyTrainer`` (Table 2's baselines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from salkit.base.images import IMAGENET_MEAN, IMAGENET_STD
from salkit.train.coop.energy_losses import corrupt_masks, descent_loss
from salkit.train.coop.langevin import revise_latent, revise_saliency
from salkit.train.engine.schedule import linear_warmup_decay
from salkit.train.engine.trainer import Trainer
from salkit.train.losses import edge_aware_smoothness, local_coherence, soft_iou_loss

MASK_EPS = 1e-4


@dataclass
class CoopSettings:
    langevin_steps: int = 5  # K, for both chains
    energy_step: float = 0.4  # δ_U
    latent_step: float = 0.1  # δ_G
    sigma: float = 0.3  # observation noise of the generator
    lr_gen: float = 5e-5
    lr_backbone_scale: float = 1.0  # the generator's backbone learns at lr_gen · this (a pretrained trunk: < 1)
    lr_energy: float = 1e-3
    beta1: float = 0.9
    lr_decay: float = 0.9
    lr_decay_every: int = 20  # epochs
    # "step": × lr_decay every lr_decay_every epochs (the paper's); "linear": per step, linearly from the
    # base rates to 0 at the last step, for runs of one epoch or less (a short run at a constant rate ends
    # with the noise of its last steps still in the weights).
    lr_schedule: str = "step"
    ce_weight: float = 1.0  # λ at the start; decays linearly to 0 (ce_decay) or stays
    ce_decay: bool = True  # Algorithm 1's schedule; False keeps λ = ce_weight throughout
    generator_only: str | None = None  # Table 2's baselines (baselines.MODES); None = cooperative
    langevin_noise: bool = True
    energy_reg: float = 0.0  # α·mean(U²) on the θ update; 0 = the paper (no regulariser)
    # Not in the paper (energy_losses.py): β of the BCE of U's K-step descent from Ŷ (0 = off),
    # and degraded ground truths as extra negatives of the θ loss (and extra descent starts).
    energy_descent: float = 0.0
    energy_corrupt: bool = False
    # The energy-only fine-tune (energy_only.py, train-coop --energy-only): generator frozen,
    # U trained on the descent BCE from these start maps (comma-separated), Ŷ from N samples.
    energy_only: bool = False
    descent_starts: str = "generator,degraded,restyled"
    descent_samples: int = 4
    # Weight of a soft-IoU term beside the descent's BCE (0 = BCE alone). The pixel-mean BCE is
    # dominated by the background, so a descent that learns from it alone darkens weak object parts too.
    descent_iou: float = 0.0
    # Not in the paper: weight of a soft-IoU term beside the generator's BCE against full masks (0 = the
    # paper's BCE alone). Scribble supervision (partial masks) keeps its BCE alone.
    iou_weight: float = 0.0
    # Not in the paper: weight of an edge-aware smoothness term on the generator's map, for scribble
    # supervision (losses.edge_aware_smoothness); 0 = off. The scribble CE reaches only the labelled pixels.
    smoothness_weight: float = 0.0
    # Not in the paper: weight of the local coherence term (losses.local_coherence: near pixels alike in colour
    # agree, over a window of the photo) on the generator's map, for scribble supervision; 0 = off.
    coherence_weight: float = 0.0


def ce_weight_at(step: int, total_steps: int, start: float) -> float:
    """λ after ``step`` optimiser steps: ``start`` at 0, falling linearly to 0 at ``total_steps``."""
    if total_steps <= 0:
        return 0.0
    return start * max(0.0, 1.0 - step / total_steps)


def unnormalise(image: torch.Tensor) -> torch.Tensor:
    """An ImageNet-normalised batch (B,3,S,S) back to [0, 1] pixel values."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    return image * std + mean


def mask_to_logits(mask: torch.Tensor) -> torch.Tensor:
    clipped = mask.clamp(MASK_EPS, 1.0 - MASK_EPS)
    return torch.log(clipped) - torch.log1p(-clipped)


class CoopTrainer(Trainer):
    model_name = "coop"
    model_kind = "coop"
    supervision = "full"  # recorded in the checkpoint's train_config; "scribble" for ScribbleTrainer

    def __init__(self, model: Any, dataset: Any, options: Any, settings: CoopSettings) -> None:
        super().__init__(model, dataset, options, {"coop": settings.__dict__, "supervision": self.supervision})
        self.settings = settings
        self._last: dict[str, torch.Tensor] = {}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        s = self.settings
        return {
            "generator": torch.optim.Adam(self.generator_groups(), lr=s.lr_gen, betas=(s.beta1, 0.999)),
            "energy": torch.optim.Adam(self.model.energy.parameters(), lr=s.lr_energy, betas=(s.beta1, 0.999)),
        }

    def generator_groups(self) -> list[dict[str, Any]]:
        """The generator's parameters: the backbone at lr_gen · lr_backbone_scale, the rest at lr_gen."""
        s, generator = self.settings, self.model.generator
        if s.lr_backbone_scale == 1.0:  # one group, as checkpoints from before the scale have
            return [{"params": list(generator.parameters())}]
        trunk = list(generator.backbone.parameters())
        ids = {id(p) for p in trunk}
        return [{"params": trunk, "lr": s.lr_gen * s.lr_backbone_scale},
                {"params": [p for p in generator.parameters() if id(p) not in ids], "lr": s.lr_gen}]

    def build_schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        s = self.settings
        if s.lr_schedule == "linear":
            return {}
        return {k: torch.optim.lr_scheduler.StepLR(o, s.lr_decay_every, s.lr_decay) for k, o in optimizers.items()}

    def lr_factor(self) -> float | None:
        return linear_warmup_decay(self.step, 0, self.total_steps) if self.settings.lr_schedule == "linear" else None

    def setup(self) -> None:
        self.generator_dp = self.ddp(self.model.generator)
        self.energy_dp = self.ddp(self.model.energy)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        s = self.settings
        x, mask = batch["image"], batch["mask"]
        generator = self.model.generator
        feats = self.generator_dp(x)  # encode once, with gradients, train-mode BN
        h_hat = torch.randn(x.shape[0], generator.latent_dim, device=x.device)
        with torch.no_grad():
            y_hat = generator.decode([f.detach() for f in feats], h_hat)
        y_tilde = self._revise_saliency(y_hat, x)
        h_tilde = self._revise_latent(feats, y_tilde, h_hat)
        gap = self._update_energy(x, mask_to_logits(mask), y_tilde, starts=y_hat, target=mask)
        regression, ce, lam = self._update_generator(feats, h_tilde, y_tilde, mask,
                                                     ce_weight=None if s.ce_decay else s.ce_weight)
        self._last = {"image": x, "mask": mask, "y_hat": y_hat, "y_tilde": y_tilde}
        return {"energy_gap": gap, "regression": regression, "ce": ce, "lambda": lam}

    def _revise_saliency(self, y_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        s, energy = self.settings, self.model.energy
        energy.eval()
        try:
            chain = revise_saliency(energy, y_hat, x, s.langevin_steps, s.energy_step, s.langevin_noise)
        finally:
            energy.train()
        if chain.bad_step is not None:
            self.flag_divergence(f"the Langevin chain on Y turned NaN/inf at Langevin step {chain.bad_step}")
        return chain.value

    def _revise_latent(self, feats: list[torch.Tensor], y_tilde: torch.Tensor, h_hat: torch.Tensor) -> torch.Tensor:
        s = self.settings
        chain = revise_latent(
            self.model.generator.decode, feats, y_tilde, h_hat, s.langevin_steps, s.latent_step, s.sigma, s.langevin_noise
        )
        if chain.bad_step is not None:
            self.flag_divergence(f"the Langevin chain on h turned NaN/inf at Langevin step {chain.bad_step}")
        return chain.value

    def _update_energy(
        self, x: torch.Tensor, data: torch.Tensor, y_tilde: torch.Tensor, weights: torch.Tensor | None = None,
        starts: torch.Tensor | None = None, target: torch.Tensor | None = None,
    ) -> float:
        """``data``: logits of the maps U should rate as data; ``weights`` (B,) pair data and revised
        rows (a weight-0 row drops out of both terms; None = every row, the plain means).
        ``starts`` (logits) / ``target`` (mask): the descent term's start maps and truth, used only
        when ``energy_descent`` or ``energy_corrupt`` is set."""
        s = self.settings
        optimizer = self.optimizers["energy"]
        optimizer.zero_grad(set_to_none=True)
        b = x.shape[0]
        negatives = [y_tilde]
        if s.energy_corrupt and target is not None:
            negatives.append(mask_to_logits(corrupt_masks(target)))
        n = len(negatives)
        energies = self.energy_dp(torch.cat([data, *negatives]), x.repeat(n + 1, 1, 1, 1))  # ((n+1)·B,)
        if weights is None:
            gap = energies[b:].mean() - energies[:b].mean()
        else:
            gap = (weights * (energies[b:] - energies[:b])).sum() / weights.sum().clamp(min=1.0)
        # gap = U(revised) − U(data), positive once U separates them; θ maximises it.
        loss = -gap + s.energy_reg * energies.pow(2).mean()
        if s.energy_descent > 0 and starts is not None and target is not None:
            # After the train-mode pass above: it updates the BN running statistics the descent reads.
            from_maps = torch.cat([starts, *negatives[1:]])  # Ŷ (+ the degraded truths)
            loss = loss + s.energy_descent * descent_loss(
                self.model.energy, from_maps, x.repeat(n, 1, 1, 1), target.repeat(n, 1, 1, 1),
                s.langevin_steps, s.energy_step, iou=s.descent_iou)
        loss.backward()
        optimizer.step()
        return float(gap.detach())

    def _update_generator(
        self, feats: list[torch.Tensor], h_tilde: torch.Tensor, y_tilde: torch.Tensor | None, mask: torch.Tensor,
        ce_mask: torch.Tensor | None = None, ce_weight: float | None = None, image: torch.Tensor | None = None,
    ) -> tuple[float, float, float]:
        """``ce_mask`` (B,1,S,S) in {0, 1}: the BCE averages over those pixels only (None = all);
        ``ce_weight``: λ for this step (None = the decaying schedule); ``y_tilde`` None: no regression term;
        ``image`` (the normalised batch): the photo of the smoothness and coherence terms, when their weights are set."""
        s = self.settings
        optimizer = self.optimizers["generator"]
        optimizer.zero_grad(set_to_none=True)
        logits = self.model.generator.decode(feats, h_tilde)
        regression = (logits - y_tilde).pow(2).mean() / (2.0 * s.sigma * s.sigma) if y_tilde is not None else logits.new_zeros(())
        if ce_mask is None:
            ce = F.binary_cross_entropy_with_logits(logits, mask)
            if s.iou_weight > 0:
                ce = ce + s.iou_weight * soft_iou_loss(torch.sigmoid(logits), mask)
        else:
            ce = F.binary_cross_entropy_with_logits(logits, mask, weight=ce_mask, reduction="sum") / ce_mask.sum().clamp(min=1.0)
        lam = ce_weight_at(self.step, self.total_steps, s.ce_weight) if ce_weight is None else ce_weight
        loss = regression + lam * ce
        if s.smoothness_weight > 0 and image is not None:
            loss = loss + s.smoothness_weight * edge_aware_smoothness(torch.sigmoid(logits), unnormalise(image))
        if s.coherence_weight > 0 and image is not None:
            loss = loss + s.coherence_weight * local_coherence(torch.sigmoid(logits), unnormalise(image))
        loss.backward()
        optimizer.step()
        return float(regression.detach()), float(ce.detach()), lam

    def grid_panels(self, batch: Any) -> list[torch.Tensor]:
        if not self._last:
            return []
        image = unnormalise(self._last["image"])
        return [image, self._last["mask"], torch.sigmoid(self._last["y_hat"]), torch.sigmoid(self._last["y_tilde"])]
