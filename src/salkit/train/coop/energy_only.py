"""`train-coop --init CKPT --energy-only`: fine-tune the energy to refine maps, generator frozen.

The paper's θ loss only asks U to rank the truth below revised maps; on PASCAL-S U learns that
ranking, yet the K-step descent the runtime performs barely moves maps and not towards the truth
(docs/coop.md, "Does the energy refine?"). This stage trains U for the descent itself ("learning
to descend"): per batch it forms start maps, runs the runtime's noise-free K-step descent from
them, unrolled (``coop_energy_losses.descend_differentiably``), and minimises the BCE between the
descended maps and the ground truth. Only U's parameters are updated; U runs in eval mode
throughout (batch-norm running statistics frozen), so the function trained is the one exported.

Start maps (``descent_starts``), each a probability map turned into logits as the runtime does
(``kernels.coop``: clip to [1e-6, 1 − 1e-6], logit):

* ``generator`` — Ŷ, the mean of ``descent_samples`` generator samples: what ``predict`` descends;
* ``degraded`` — degraded ground truths (``corrupt_masks``), squeezed into [0.05, 0.95] so that
  every pixel can move: maps another model could have made, for ``refine``;
* ``restyled`` — Ŷ at a random temperature (logits × t, t ∈ [0.3, 1.5]) and box-blurred: the
  generator's content with another model's calibration and sharpness, for ``refine``.

δ and K (``energy_step``, ``langevin_steps``) are recorded in the checkpoint like any coop run's,
so ``export-trt`` and ``sal-runtime predict/refine`` use them unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from salkit.base.errors import SalkitError
from salkit.kernels.coop import LOGIT_EPS
from salkit.train.coop.energy_losses import corrupt_masks, descend_differentiably, final_loss
from salkit.train.coop.trainer import CoopTrainer

START_KINDS = ("generator", "degraded", "restyled")
SQUEEZE = 0.05  # degraded maps live in [SQUEEZE, 1 − SQUEEZE]: a saturated pixel cannot move in logit space


def parse_starts(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in START_KINDS]
    if not kinds or unknown:
        raise SalkitError(f"--descent-starts takes a comma-separated subset of {', '.join(START_KINDS)}, got {text!r}")
    return kinds


def to_logits(p: torch.Tensor) -> torch.Tensor:
    """The runtime's start: logit(clip(p, eps, 1 − eps)) (kernels.coop.ArrayOps.logit)."""
    q = p.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS)
    return torch.log(q / (1.0 - q))


def restyle(p: torch.Tensor) -> torch.Tensor:
    """Probability maps (B,1,S,S) at a random temperature per image, box-blurred (width S/16, odd)."""
    b, _, s, _ = p.shape
    t = 0.3 + 1.2 * torch.rand(b, 1, 1, 1)
    out = torch.sigmoid(to_logits(p) * t)
    width = max(1, s // 16) | 1
    return F.avg_pool2d(F.pad(out, [width // 2] * 4, mode="replicate"), width, stride=1)


class EnergyOnlyTrainer(CoopTrainer):
    """``CoopTrainer`` whose step trains U alone on the descent BCE (``settings.energy_only``)."""

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        s = self.settings
        return {"energy": torch.optim.Adam(self.model.energy.parameters(), lr=s.lr_energy, betas=(s.beta1, 0.999))}

    def build_schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, object]:
        s = self.settings
        if s.lr_schedule == "linear":
            return {}
        return {"energy": torch.optim.lr_scheduler.StepLR(optimizers["energy"], s.lr_decay_every, s.lr_decay)}

    def setup(self) -> None:
        for p in self.model.generator.parameters():
            p.requires_grad_(False)
        self.energy_dp = self.model.energy  # the descent runs on the module itself (double backward)

    @torch.no_grad()
    def generator_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Ŷ (B,1,S,S): the mean probability of N generator samples, as ``predict`` forms it."""
        generator = self.model.generator
        generator.eval()
        latents = torch.randn(self.settings.descent_samples, x.shape[0], generator.latent_dim, device=x.device)  # (N,B,d)
        return torch.sigmoid(generator.decode_samples(generator.encode(x), latents)).mean(0)

    def start_maps(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        kinds = parse_starts(self.settings.descent_starts)
        y_hat = self.generator_maps(x) if ("generator" in kinds or "restyled" in kinds) else None
        maps: dict[str, torch.Tensor] = {}
        for kind in kinds:
            if kind == "generator":
                maps[kind] = y_hat
            elif kind == "degraded":
                maps[kind] = SQUEEZE + (1.0 - 2.0 * SQUEEZE) * corrupt_masks(mask)
            else:
                maps[kind] = restyle(y_hat)
        return maps

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        s = self.settings
        x, mask = batch["image"], batch["mask"]
        maps = self.start_maps(x, mask)
        n = len(maps)
        starts = to_logits(torch.cat(list(maps.values())))  # (n·B,1,S,S)
        energy = self.model.energy
        energy.eval()  # running statistics stay those of the checkpoint: the exported function
        optimizer = self.optimizers["energy"]
        optimizer.zero_grad(set_to_none=True)
        final = descend_differentiably(energy, starts, x.repeat(n, 1, 1, 1), s.langevin_steps, s.energy_step)
        target = mask.repeat(n, 1, 1, 1)
        loss = final_loss(final, target, s.descent_iou)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            moved = (torch.sigmoid(final) - torch.sigmoid(starts)).abs().mean()
            before = F.binary_cross_entropy_with_logits(starts, target)
            bce = F.binary_cross_entropy_with_logits(final, target)
        self._last = {"image": x, "mask": mask, "y_hat": starts[:x.shape[0]], "y_tilde": final[:x.shape[0]].detach()}
        return {"descent_bce": float(bce), "descent_loss": float(loss.detach()), "start_bce": float(before), "moved": float(moved)}
