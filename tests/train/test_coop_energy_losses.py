"""The energy's optional θ-loss terms: the differentiable descent and the degraded ground truths."""

from __future__ import annotations

import copy

import pytest
import torch

from salkit.train.coop.energy import CoopEnergy
from salkit.train.coop.energy_losses import corrupt_masks, descend_differentiably, descent_loss
from salkit.train.coop.langevin import revise_saliency


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Small convolutions and their double backward: a second thread only adds spin-waiting.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def energy() -> CoopEnergy:
    torch.manual_seed(0)
    e = CoopEnergy(32, width=0.25).double()
    with torch.no_grad():  # non-trivial running statistics, so eval-mode BN is not the identity
        for _ in range(3):
            e(torch.randn(4, 1, 32, 32, dtype=torch.float64), torch.randn(4, 3, 32, 32, dtype=torch.float64))
        # A scale at which K = 3 steps of δ = 2 move the maps by far more than rounding.
        e.net[-1].weight.mul_(200.0)
    return e.eval()


def _inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)
    y = 2.0 * torch.randn(2, 1, 32, 32, generator=g, dtype=torch.float64)
    mask = (torch.rand(2, 1, 32, 32, generator=g, dtype=torch.float64) > 0.5).double()
    return x, y, mask


def test_differentiable_descent_is_the_noise_free_chain(energy: CoopEnergy) -> None:
    x, y, _ = _inputs()
    ours = descend_differentiably(energy, y, x, steps=3, step_size=2.0)
    chain = revise_saliency(energy, y, x, steps=3, step_size=2.0, noise=False).value
    assert (ours - y).abs().mean() > 1e-2  # the maps actually move
    torch.testing.assert_close(ours.detach(), chain, atol=1e-10, rtol=1e-10)


def test_descent_loss_gradient_matches_finite_differences(energy: CoopEnergy) -> None:
    """θ's gradient flows through all K steps: autograd vs central differences on weights of the
    first conv (which shapes ∂U/∂Y only through the chain) and of the last linear layer."""
    e = copy.deepcopy(energy)
    x, y, mask = _inputs(2)
    loss = descent_loss(e, y, x, mask, steps=3, step_size=2.0)
    params = dict(e.named_parameters())
    grads = torch.autograd.grad(loss, [params["net.0.weight"], params["net.14.weight"]])
    assert not e.training  # eval mode kept
    for (name, index), grad in zip((("net.0.weight", (3, 3, 1, 1)), ("net.14.weight", (5, 0))), grads, strict=True):
        p, h = params[name], 1e-6
        with torch.no_grad():
            p[index] += h
            up = descent_loss(e, y, x, mask, 3, 2.0)
            p[index] -= 2 * h
            down = descent_loss(e, y, x, mask, 3, 2.0)
            p[index] += h
        numeric = (up - down) / (2 * h)
        assert abs(float(grad[index])) > 1e-6, name  # the chain really depends on this weight
        assert float(grad[index]) == pytest.approx(float(numeric), rel=1e-4, abs=1e-9), name


def test_descent_loss_restores_training_mode(energy: CoopEnergy) -> None:
    e = copy.deepcopy(energy).train()
    x, y, mask = _inputs()
    before = e.net[1].running_mean.clone()
    descent_loss(e, y, x, mask, 1, 0.4)
    assert e.training
    torch.testing.assert_close(e.net[1].running_mean, before)  # eval mode: statistics untouched


def test_corrupt_masks_degrade_but_keep_range_and_replay_from_the_seed() -> None:
    mask = torch.zeros(4, 1, 64, 64)
    mask[:, :, 16:48, 20:44] = 1.0
    torch.manual_seed(3)
    first = corrupt_masks(mask)
    torch.manual_seed(3)
    again = corrupt_masks(mask)
    assert first.shape == mask.shape
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    torch.testing.assert_close(first, again)
    mae = (first - mask).abs().mean(dim=(1, 2, 3))  # (B,)
    assert (mae > 0.05).all() and (mae < 0.5).all(), mae  # degraded, yet still about the object


def test_training_on_the_descent_loss_makes_the_descent_repair_maps() -> None:
    """On scenes whose object is visible in X, a few Adam steps on ``descent_loss`` alone turn a
    random energy (whose descent leaves degraded masks as they are) into one whose K-step
    descent moves them by more than 0.005 on average and towards the truth."""
    from salkit.train.coop.trainer import mask_to_logits

    torch.manual_seed(4)
    b, s = 8, 32
    mask = torch.zeros(b, 1, s, s)
    for i in range(b):  # one bright box per scene, the mask is the box
        y0, x0 = torch.randint(2, 14, (2,)).tolist()
        mask[i, :, y0:y0 + 14, x0:x0 + 14] = 1.0
    x = (mask.repeat(1, 3, 1, 1) * 2.0 - 1.0) + 0.3 * torch.randn(b, 3, s, s)
    starts = mask_to_logits(corrupt_masks(mask))
    energy = CoopEnergy(s, width=0.25)
    with torch.no_grad():  # running statistics from the inputs the chain will see
        energy(starts, x)
    energy.eval()

    def after() -> torch.Tensor:
        return torch.sigmoid(revise_saliency(energy, starts, x, 5, 0.4, noise=False).value)

    p0 = torch.sigmoid(starts)
    untrained = after()
    assert float((untrained - p0).abs().mean()) < 0.005
    optimizer = torch.optim.Adam(energy.parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        descent_loss(energy, starts, x, mask, 5, 0.4).backward()
        optimizer.step()
    trained = after()
    assert float((trained - p0).abs().mean()) > 0.005
    assert float((trained - mask).abs().mean()) < float((p0 - mask).abs().mean()) - 0.005


def test_descent_loss_adds_the_soft_iou_of_the_final_map(energy: CoopEnergy) -> None:
    """iou > 0: BCE + iou · (1 − (Σ p·m + 1) / (Σ (p + m − p·m) + 1)), per image, written out in NumPy."""
    x, y, mask = _inputs(3)
    final = descend_differentiably(energy, y, x, steps=3, step_size=2.0).detach()
    p, m = torch.sigmoid(final).numpy(), mask.numpy()
    bce = float(torch.nn.functional.binary_cross_entropy_with_logits(final, mask))
    iou = sum(1 - ((p[b] * m[b]).sum() + 1) / ((p[b] + m[b] - p[b] * m[b]).sum() + 1) for b in range(2)) / 2
    assert iou > 0.05  # the term is not negligible on these inputs
    assert descent_loss(energy, y, x, mask, 3, 2.0).item() == pytest.approx(bce, rel=1e-10)
    assert descent_loss(energy, y, x, mask, 3, 2.0, iou=0.5).item() == pytest.approx(bce + 0.5 * iou, rel=1e-10)
