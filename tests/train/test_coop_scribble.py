"""Algorithm 2 numerics: the masked likelihood gradient, the recovery chains and one scribble step."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from salkit.kernels.langevin import langevin_step
from salkit.train.coop.scribble import recovery_metrics, scribble_targets
from salkit.train.coop.scribble_langevin import infer_latent_observed, masked_latent_grad, recover_saliency
from salkit.train.coop.trainer import CoopSettings, CoopTrainer, mask_to_logits
from salkit.train.engine.registry import create_model
from salkit.train.engine.trainer import LoopOptions

torch.set_num_threads(2)
SIGMA = 0.3


@pytest.fixture(scope="module")
def generator32():
    torch.manual_seed(1)
    return create_model("coop", preset="tiny").generator.double().eval()


def _scribble(b: int, size: int, fraction: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(1, 3, (b, 1, size, size), generator=g)
    return torch.where(torch.rand(b, 1, size, size, generator=g) < fraction, labels, torch.zeros_like(labels))


def _log_joint(decode, feats, target, observed, h) -> torch.Tensor:
    """log p(Y′, h | X) up to a constant, as a scalar summed over the batch (the reference form)."""
    residual = observed * (target - decode(feats, h))
    return -(residual**2).sum() / (2 * SIGMA**2) - 0.5 * (h**2).sum()


def test_masked_gradient_matches_autograd_and_finite_differences(generator32) -> None:
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    feats = generator32.encode(x)
    observed, labels = scribble_targets(_scribble(2, 32, 0.1, 0))
    target = mask_to_logits(labels) + 0.3 * torch.randn(2, 1, 32, 32, dtype=torch.float64)
    h = torch.randn(2, 8, dtype=torch.float64)
    grad = masked_latent_grad(generator32.decode, feats, target, observed, h, SIGMA)

    hh = h.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(_log_joint(generator32.decode, feats, target, observed, hh), hh)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-10)
    for idx in [(0, 0), (1, 3), (0, 7), (1, 5)]:
        e = torch.zeros_like(h)
        e[idx] = 1e-5
        with torch.no_grad():
            up = _log_joint(generator32.decode, feats, target, observed, h + e)
            down = _log_joint(generator32.decode, feats, target, observed, h - e)
        assert grad[idx].item() == pytest.approx(float((up - down) / 2e-5), rel=1e-5, abs=1e-5)
    assert grad.abs().max() > 1.0  # the likelihood term is really there, not only the prior's −h


def test_unannotated_pixels_contribute_nothing(generator32) -> None:
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    feats = generator32.encode(x)
    observed, labels = scribble_targets(_scribble(2, 32, 0.05, 1))
    target = mask_to_logits(labels)
    h = torch.randn(2, 8, dtype=torch.float64)
    base = masked_latent_grad(generator32.decode, feats, target, observed, h, SIGMA)
    unknown = observed == 0
    for junk in (100.0 * torch.randn_like(target), torch.full_like(target, math.inf), torch.full_like(target, math.nan)):
        perturbed = torch.where(unknown, junk, target)
        assert torch.equal(masked_latent_grad(generator32.decode, feats, perturbed, observed, h, SIGMA), base)
    # The test could fail: the same perturbation on one annotated pixel does move the gradient.
    b, _, i, j = observed.nonzero()[0].tolist()
    moved = target.clone()
    moved[b, 0, i, j] += 5.0
    assert not torch.allclose(masked_latent_grad(generator32.decode, feats, moved, observed, h, SIGMA)[b], base[b])


def test_latent_inference_reaches_the_gaussian_posterior_and_recovers_hidden_pixels() -> None:
    """Linear G(h) = A h: the masked posterior is Gaussian with a closed form; noise-free Langevin
    descends to its mean, and G at that mean predicts the pixels the scribble did not show."""
    torch.manual_seed(3)
    side, d, b, sigma = 8, 3, 2, 0.3
    a = torch.randn(side * side, d, dtype=torch.float64)  # (P, d)
    decode = lambda feats, h: (h @ a.T).view(-1, 1, side, side)  # (B,d) → (B,P) → (B,1,S,S)
    h_true = torch.randn(b, d, dtype=torch.float64)
    y_true = decode(None, h_true)
    observed = (torch.rand(b, 1, side, side) < 0.2).double()
    target = torch.where(observed > 0, y_true, torch.full_like(y_true, 1e6))  # garbage where unseen
    means, lam_max = [], 0.0
    for i in range(b):
        o = observed[i].flatten()  # (P,)
        precision = torch.eye(d, dtype=torch.float64) + a.T @ (o[:, None] * a) / sigma**2
        means.append(torch.linalg.solve(precision, a.T @ (o * y_true[i].flatten()) / sigma**2))
        lam_max = max(lam_max, float(torch.linalg.eigvalsh(precision).max()))
    step = math.sqrt(2.0 / (1.2 * lam_max))  # gradient-descent rate δ²/2 below 1/λ_max
    h = infer_latent_observed(decode, [], target, observed, torch.zeros(b, d, dtype=torch.float64), 3000, step,
                              sigma, noise=False).value
    torch.testing.assert_close(h, torch.stack(means), rtol=1e-6, atol=1e-8)
    hidden = observed == 0
    recovered_error = (decode(None, h) - y_true)[hidden].abs().mean()
    prior_error = y_true[hidden].abs().mean()  # G at the prior mean h = 0
    assert recovered_error < 0.25 * prior_error


def test_latent_chain_on_the_tiny_generator_moves_toward_the_scribble(generator32) -> None:
    torch.manual_seed(4)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    feats = generator32.encode(x)
    observed, labels = scribble_targets(_scribble(2, 32, 0.08, 2))
    target = mask_to_logits(labels)
    h0 = torch.randn(2, 8, dtype=torch.float64)
    h = infer_latent_observed(generator32.decode, feats, target, observed, h0, 5, 0.02, SIGMA, noise=False).value
    with torch.no_grad():
        before = _log_joint(generator32.decode, feats, target, observed, h0)
        after = _log_joint(generator32.decode, feats, target, observed, h)
        agree_before = ((generator32.decode(feats, h0) > 0).double() == labels)[observed > 0].double().mean()
        agree_after = ((generator32.decode(feats, h) > 0).double() == labels)[observed > 0].double().mean()
    assert after > before
    assert agree_after >= agree_before


def test_recovery_holds_the_scribble_and_is_langevin_on_the_unknown_pixels() -> None:
    torch.manual_seed(5)
    energy = create_model("coop", preset="tiny").energy.eval()
    x, y = torch.randn(2, 3, 64, 64), torch.randn(2, 1, 64, 64)
    observed, labels = scribble_targets(_scribble(2, 64, 0.05, 3))
    target = mask_to_logits(labels)
    noises = torch.randn(2, 2, 1, 64, 64)  # (K,B,1,S,S)
    out = recover_saliency(energy, y, x, observed, target, 2, 0.4, noises=noises)
    assert out.bad_step is None
    keep = observed > 0
    assert torch.equal(out.value[keep], target[keep])  # agrees with the scribble wherever one was drawn
    expected = torch.where(keep, target, y)  # reference: clamp, then per step kernel + autograd gradient, clamp
    for k in range(2):
        yy = expected.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(yy, x).sum(), yy)
        expected = torch.where(keep, target, langevin_step(expected, grad, 0.4, noises[k]))
    torch.testing.assert_close(out.value, expected, rtol=1e-5, atol=1e-5)
    assert (out.value - y)[~keep].abs().mean() > 0.1  # the unknown pixels moved


def test_recovery_metrics_against_direct_formulas() -> None:
    torch.manual_seed(6)
    rec = torch.rand(3, 1, 32, 32, dtype=torch.float64)
    gt = (torch.rand(3, 1, 32, 32) > 0.6).double()
    observed = (torch.rand(3, 1, 32, 32) < 0.1).double()
    got = recovery_metrics(rec, gt, observed)
    assert got["recovery_mae"] == pytest.approx(float((rec - gt).abs().mean()), rel=1e-9)
    assert got["recovery_mae_unknown"] == pytest.approx(float((rec - gt).abs()[observed == 0].mean()), rel=1e-9)
    perfect = recovery_metrics(gt.clone(), gt, observed)
    assert perfect["recovery_mae"] == 0.0 and perfect["recovery_s"] == pytest.approx(1.0, abs=1e-6)
    assert 0.0 < got["recovery_s"] < 0.9


def _trainer(tmp_path, scribble: bool = True) -> CoopTrainer:
    from salkit.train.coop.scribble import ScribbleOptions, ScribbleTrainer

    torch.manual_seed(0)
    m = create_model("coop", preset="tiny")
    options, settings = LoopOptions(out=str(tmp_path)), CoopSettings(langevin_steps=2)
    trainer = (ScribbleTrainer(m, [0], options, settings, ScribbleOptions()) if scribble
               else CoopTrainer(m, [0], options, settings))
    trainer.optimizers = trainer.build_optimizers()
    trainer.setup()
    return trainer


def test_scribble_step_gradients_and_an_unannotated_row(monkeypatch, tmp_path) -> None:
    trainer = _trainer(tmp_path)
    m = trainer.model
    seen = {}
    for name, opt in trainer.optimizers.items():
        def record(*args, _name=name, _opt=opt, **kwargs):
            seen[_name] = [p.grad.clone() for group in _opt.param_groups for p in group["params"]]
        monkeypatch.setattr(opt, "step", record)
    scribble = _scribble(2, 64, 0.05, 7)
    scribble[1] = 0  # row 1: nothing annotated
    batch = {"image": torch.randn(2, 3, 64, 64), "scribble": scribble, "hidden_gt": (torch.rand(2, 1, 64, 64) > 0.5).float()}
    scalars = trainer.train_step(batch)
    assert all(math.isfinite(v) for v in scalars.values()), scalars
    assert scalars["unannotated"] == 1.0 and 0 < scalars["recovery_mae"] < 1
    last = trainer._last
    observed, labels = scribble_targets(scribble)
    keep = observed > 0
    assert torch.equal(last["y_rec"][keep], mask_to_logits(labels)[keep])
    # θ's gradient is that of U(Ỹ′) − U(Ỹ) averaged over the annotated rows only (independent autograd).
    m.zero_grad(set_to_none=True)
    e = m.energy(torch.cat([last["y_rec"], last["y_tilde"]]), torch.cat([batch["image"]] * 2))  # (4,)
    (e[0] - e[2]).backward()  # row 1 drops out of both terms
    for got, p in zip(seen["energy"], m.energy.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, atol=1e-5, rtol=1e-4)
    assert len(seen["generator"]) == len(list(m.generator.parameters()))


def test_ce_uses_annotated_pixels_only(tmp_path) -> None:
    trainer = _trainer(tmp_path)
    gen = trainer.model.generator
    feats = gen.encode(torch.randn(2, 3, 64, 64))
    h = torch.randn(2, 8)
    observed, labels = scribble_targets(_scribble(2, 64, 0.05, 8))
    with torch.no_grad():
        p = torch.sigmoid(gen.decode(feats, h))
    bce = -(labels * torch.log(p) + (1 - labels) * torch.log1p(-p))
    expected = float(bce[observed > 0].mean())
    y_tilde = torch.randn(2, 1, 64, 64)
    _, ce, _ = trainer._update_generator([f.detach() for f in feats], h, y_tilde, labels, ce_mask=observed)
    assert ce == pytest.approx(expected, rel=1e-4)
    assert abs(expected - float(F.binary_cross_entropy(p, labels))) > 1e-3  # differs from the all-pixel mean
    _, _, lam = trainer._update_generator([f.detach() for f in feats], h, y_tilde, labels, ce_mask=observed, ce_weight=0.7)
    assert lam == 0.7  # a constant λ overrides the schedule (scribble mode's --ce-constant)
