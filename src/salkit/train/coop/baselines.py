"""Table 2's ablation baselines: the cooperative model's generator trained without the energy.

``train-coop --generator-only MODE`` trains the same generator (same encoder, decoder and data)
with the energy left untouched:

* ``deterministic`` — G(X): h fixed to 0, the BCE to the ground truth only. Predict with h = 0.
* ``latent`` — G(X, h) alone, the latent-variable model by alternating back-propagation: h is
  inferred by K Langevin steps on the posterior given the ground truth's logits (the cooperative
  step's latent revision with Ỹ replaced by the ground truth), then G takes the same
  regression + λ·BCE step as in Algorithm 1. Predict with the mean over h ~ N(0, I) samples.

The log's ``energy_gap`` is 0 for these runs (no energy update).
"""

from __future__ import annotations

import torch

from salkit.train.coop.trainer import CoopTrainer, mask_to_logits

MODES = ("deterministic", "latent")


class GeneratorOnlyTrainer(CoopTrainer):
    """``CoopTrainer`` whose step trains the generator alone (``settings.generator_only`` in MODES)."""

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return generator_only_step(self, batch)


def generator_only_step(trainer: CoopTrainer, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    s = trainer.settings
    x, mask = batch["image"], batch["mask"]
    generator = trainer.model.generator
    feats = trainer.generator_dp(x)  # encode once, with gradients, train-mode BN
    target = mask_to_logits(mask)  # (B,1,S,S): the observation Y in logit space
    h = torch.zeros(x.shape[0], generator.latent_dim, device=x.device)
    if s.generator_only == "latent":
        h = trainer._revise_latent(feats, target, torch.randn_like(h))
        regression_target: torch.Tensor | None = target
    else:
        regression_target = None  # a deterministic network: the BCE alone
    with torch.no_grad():
        y_hat = generator.decode([f.detach() for f in feats], h)
    regression, ce, lam = trainer._update_generator(feats, h, regression_target, mask,
                                                    ce_weight=None if s.ce_decay else s.ce_weight)
    trainer._last = {"image": x, "mask": mask, "y_hat": y_hat, "y_tilde": target}
    return {"energy_gap": 0.0, "regression": regression, "ce": ce, "lambda": lam}
