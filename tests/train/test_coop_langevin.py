"""Langevin revisions in training: descent, batching, no gradient leak, and the λ schedule."""

from __future__ import annotations

import pytest
import torch

from salkit.kernels.langevin import langevin_step
from salkit.train.coop.langevin import revise_latent, revise_saliency
from salkit.train.coop.trainer import ce_weight_at
from salkit.train.engine.registry import create_model

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model("coop", preset="tiny", image_size=64)
    # Non-trivial running statistics so eval-mode BN is not the identity.
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m.energy(torch.randn(4, 1, 64, 64), torch.randn(4, 3, 64, 64))
    return m.eval()


def test_energy_decreases_under_noise_free_descent(model) -> None:
    import copy

    energy = copy.deepcopy(model.energy).double()  # float64: the decrease is not lost in rounding
    x, y = torch.randn(3, 3, 64, 64, dtype=torch.float64), 0.5 * torch.randn(3, 1, 64, 64, dtype=torch.float64)
    energies = [energy(y, x).detach()]
    for _ in range(5):
        y = revise_saliency(energy, y, x, steps=1, step_size=1.0, noise=False).value
        energies.append(energy(y, x).detach())
    stacked = torch.stack(energies)  # (6, B)
    assert (stacked[1:] < stacked[:-1]).all(), stacked


def test_one_step_is_the_kernel_with_autograd_gradient_per_image(model) -> None:
    x, y = torch.randn(3, 3, 64, 64), torch.randn(3, 1, 64, 64)
    noises = torch.randn(1, 3, 1, 64, 64)
    batched = revise_saliency(model.energy, y, x, 1, 0.4, noises=noises).value
    for b in range(3):  # per-image reference: batched Langevin = B independent chains
        yb = y[b : b + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.energy(yb, x[b : b + 1]).sum(), yb)
        expected = yb.detach() - 0.5 * 0.4**2 * grad + 0.4 * noises[0, b : b + 1]
        torch.testing.assert_close(batched[b : b + 1], expected, atol=1e-5, rtol=1e-5)


def test_latent_chain_matches_finite_difference_gradient() -> None:
    torch.manual_seed(1)
    gen = create_model("coop", preset="tiny").generator.double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    feats = gen.encode(x)
    target = torch.randn(2, 1, 64, 64, dtype=torch.float64)
    h = torch.randn(2, 8, dtype=torch.float64)
    sigma, step = 0.3, 0.1

    def neg_log_joint(hh: torch.Tensor) -> float:
        with torch.no_grad():
            return float(((target - gen.decode(feats, hh)) ** 2).sum() / (2 * sigma**2) + 0.5 * (hh**2).sum())

    grad = torch.zeros_like(h)
    for idx in [(0, 0), (1, 3), (0, 7)]:
        e = torch.zeros_like(h)
        e[idx] = 1e-6
        grad[idx] = (neg_log_joint(h + e) - neg_log_joint(h - e)) / 2e-6
    revised = revise_latent(gen.decode, feats, target, h, steps=1, step_size=step, sigma=sigma, noise=False).value
    expected = langevin_step(h, grad, step)
    for idx in [(0, 0), (1, 3), (0, 7)]:
        assert revised[idx].item() == pytest.approx(expected[idx].item(), rel=1e-5, abs=1e-8)


def test_langevin_never_leaves_gradients_in_parameters(model) -> None:
    model.zero_grad(set_to_none=True)
    x = torch.randn(2, 3, 64, 64)
    feats = model.generator.encode(x)  # with grad, as in training
    y = revise_saliency(model.energy, torch.randn(2, 1, 64, 64), x, 3, 0.4).value
    revise_latent(model.generator.decode, feats, y, torch.randn(2, 8), 3, 0.1, 0.3)
    assert all(p.grad is None for p in model.parameters())
    assert not y.requires_grad


@pytest.mark.parametrize("energy_reg", [0.0, 0.05])
def test_trainer_step_gradients_come_only_from_the_losses(monkeypatch, tmp_path, energy_reg: float) -> None:
    """In a full step, each optimiser sees exactly the gradient of its own loss (autograd reference)."""
    from salkit.train.coop.trainer import CoopSettings, CoopTrainer
    from salkit.train.engine.trainer import LoopOptions

    torch.manual_seed(0)
    m = create_model("coop", preset="tiny")
    trainer = CoopTrainer(m, [0], LoopOptions(out=str(tmp_path)), CoopSettings(langevin_steps=2, energy_reg=energy_reg))
    trainer.optimizers = trainer.build_optimizers()
    trainer.setup()
    seen = {}
    for name, opt in trainer.optimizers.items():
        def record(*args, _name=name, _opt=opt, **kwargs):
            seen[_name] = [p.grad.clone() for group in _opt.param_groups for p in group["params"]]
        monkeypatch.setattr(opt, "step", record)
    batch = {"image": torch.randn(2, 3, 64, 64), "mask": (torch.rand(2, 1, 64, 64) > 0.5).float()}
    trainer.train_step(batch)
    last = trainer._last
    # Energy loss recomputed independently from the step's revised maps.
    m.zero_grad(set_to_none=True)
    from salkit.train.coop.trainer import mask_to_logits

    e = m.energy(torch.cat([mask_to_logits(batch["mask"]), last["y_tilde"]]), torch.cat([batch["image"]] * 2))
    (e[:2].mean() - e[2:].mean() + energy_reg * e.pow(2).mean()).backward()
    for got, p in zip(seen["energy"], m.energy.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, atol=1e-5, rtol=1e-4)
    assert len(seen["generator"]) == len(list(m.generator.parameters()))  # every parameter got a gradient


def test_ce_weight_decays_linearly_to_zero() -> None:
    values = [ce_weight_at(s, 10, 2.0) for s in range(0, 13)]
    assert values[0] == 2.0 and values[5] == pytest.approx(1.0) and values[10] == 0.0 and values[12] == 0.0
    diffs = [a - b for a, b in zip(values[:10], values[1:11], strict=True)]
    assert all(d == pytest.approx(0.2) for d in diffs)
