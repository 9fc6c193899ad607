"""QE-FPN training on the shared loop (salkit.train.engine.trainer).

Per step: solve the pyramid state (unrolled weight-tied layers during the solver warm-up, then the
configured solver with implicit gradients), decode, Eq. 15 loss, one SGD step.

Learning rates follow the paper: SGD (momentum 0.9, weight decay 5e-4), 0.005 for the backbone and
0.05 for everything else, a linear warm-up from 0 over ``lr_warmup_steps`` then a linear decay to 0
at the last step. The rate is a function of the step alone and is set every step, so exact resume
needs no scheduler state (the engine's schedulers step per epoch; this schedule is per step).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from salkit.base.images import IMAGENET_MEAN, IMAGENET_STD
from salkit.train.engine.schedule import linear_warmup_decay
from salkit.train.engine.trainer import Trainer
from salkit.train.qefpn.loss import qefpn_loss


@dataclass
class QEFPNSettings:
    edge: str = "sobel"
    solver: str | None = None  # None: the model's configured solver
    solver_warmup_steps: int = 3000  # unrolled layers before switching to the solver
    lr_backbone: float = 0.005
    lr_rest: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_warmup_steps: int = 500


class QEFPNTrainer(Trainer):
    model_name = "qefpn"
    model_kind = "qefpn"

    def __init__(self, model: Any, dataset: Any, options: Any, settings: QEFPNSettings) -> None:
        super().__init__(model, dataset, options, {"qefpn": asdict(settings)})
        self.settings = settings
        self._last: dict[str, torch.Tensor] = {}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        s = self.settings
        backbone = list(self.model.encoder.parameters())
        backbone_ids = {id(p) for p in backbone}
        rest = [p for p in self.model.parameters() if id(p) not in backbone_ids]
        groups = [{"params": backbone, "lr": s.lr_backbone, "base_lr": s.lr_backbone},
                  {"params": rest, "lr": s.lr_rest, "base_lr": s.lr_rest}]
        return {"sgd": torch.optim.SGD(groups, momentum=s.momentum, weight_decay=s.weight_decay)}

    def setup(self) -> None:
        self.net = self.ddp(self.model)

    def solver_for_step(self) -> str:
        if self.step < self.settings.solver_warmup_steps:
            return "unrolled"
        return self.settings.solver or self.model.solver

    def mask_generator(self) -> torch.Generator:
        """The quasi mask's own generator, seeded by (seed, step, rank): the mask draw leaves the
        global stream (augmentation) untouched, so quasi and equilibrium runs see the same data,
        and resume stays exact without extra state."""
        return torch.Generator().manual_seed(hash((self.options.seed, self.step, self.dist.rank)) % 2**62)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        x, mask = batch["image"], batch["mask"]
        optimizer = self.optimizers["sgd"]
        factor = linear_warmup_decay(self.step, self.settings.lr_warmup_steps, self.total_steps)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        solver = self.solver_for_step()
        optimizer.zero_grad(set_to_none=True)
        logits, stats = self.net(x, solver=solver, return_stats=True, generator=self.mask_generator())
        terms = qefpn_loss(logits, mask, self.settings.edge)
        terms["loss"].backward()
        optimizer.step()
        residual = float(stats["residual"].float().mean())
        if residual != residual:
            self.flag_divergence(f"the {solver} solve returned a NaN residual")
        self._last = {"image": x.detach(), "mask": mask, "logits": logits.detach()}
        scalars = {k: float(v.detach()) for k, v in terms.items()}
        scalars.update(
            lr_rest=self.settings.lr_rest * factor,
            solver_iterations=float(stats["iterations"].float().mean()),
            relative_residual=residual,
            unrolled=float(solver == "unrolled"),
            dropped=float(stats.get("dropped", 0)),
            backward_iterations=float(stats.get("backward_nstep", 0)),  # always logged: CSV columns are fixed
        )
        return scalars

    def grid_panels(self, batch: Any) -> list[torch.Tensor]:
        if not self._last:
            return []
        device = self._last["image"].device
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)  # (3,) → (1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)  # (3,) → (1, 3, 1, 1)
        image = (self._last["image"] * std + mean).clamp(0, 1)
        return [image, self._last["mask"], torch.sigmoid(self._last["logits"])]
