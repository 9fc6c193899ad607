"""Edge operators: closed-form kernels, SciPy correlation, [0, 1] range, numpy == torch, gradients."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.ndimage
import torch

from salkit.base.errors import SalkitError
from salkit.kernels.edges import OPERATORS, correlate3x3, edge_magnitude, kernels, max_magnitude

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_kernels_match_their_closed_forms() -> None:
    np.testing.assert_array_equal(kernels("sobel")[0], [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(kernels("sobel")[1], [[-1, -2, -1], [0, 0, 0], [1, 2, 1]])
    np.testing.assert_array_equal(kernels("prewitt")[0], [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]])
    np.testing.assert_array_equal(kernels("prewitt")[1], [[-1, -1, -1], [0, 0, 0], [1, 1, 1]])
    r = np.sqrt(2)
    np.testing.assert_allclose(kernels("frei-chen")[0], np.array([[-1, 0, 1], [-r, 0, r], [-1, 0, 1]]) / (2 + r))
    np.testing.assert_allclose(kernels("frei-chen")[1], kernels("frei-chen")[0].T)
    np.testing.assert_array_equal(kernels("laplacian")[0], [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    for name in OPERATORS:
        assert abs(kernels(name).sum()) < 1e-12  # no response on flat regions


def test_max_magnitude_closed_form() -> None:
    eps = 1e-6
    # Sobel: Gx = 4 with Gy = 2 at a corner patch, √20; Prewitt: Gx = 3, Gy = 1, √10; Laplacian: 4
    assert max_magnitude("sobel") == pytest.approx(np.sqrt(20 + eps) - np.sqrt(eps), rel=1e-12)
    assert max_magnitude("prewitt") == pytest.approx(np.sqrt(10 + eps) - np.sqrt(eps), rel=1e-12)
    assert max_magnitude("laplacian") == pytest.approx(np.sqrt(16 + eps) - np.sqrt(eps), rel=1e-12)


@pytest.mark.parametrize("name", OPERATORS)
def test_correlation_matches_scipy(name: str) -> None:
    x = np.random.default_rng(0).random((2, 9, 11))
    for kernel in kernels(name):
        expected = np.stack([scipy.ndimage.correlate(img, kernel, mode="nearest") for img in x])
        np.testing.assert_allclose(correlate3x3(x, kernel), expected, atol=1e-12)


@pytest.mark.parametrize("name", OPERATORS)
def test_magnitude_range_numpy_equals_torch(name: str) -> None:
    x = np.random.default_rng(1).random((3, 1, 16, 16))
    x[0] = (x[0] > 0.5).astype(float)  # a binary mask: the extreme case
    m_np = edge_magnitude(x, name)
    m_t = edge_magnitude(torch.from_numpy(x), name)
    assert isinstance(m_t, torch.Tensor)
    np.testing.assert_allclose(m_t.numpy(), m_np, atol=1e-12)
    assert m_np.min() >= 0.0 and m_np.max() <= 1.0 + 1e-12
    assert np.all(edge_magnitude(np.full((5, 5), 0.3), name) < 1e-12)  # flat is exactly zero


@pytest.mark.parametrize("name", OPERATORS)
def test_every_binary_patch_stays_in_range_and_one_reaches_one(name: str) -> None:
    patches = np.array(list(itertools.product([0.0, 1.0], repeat=9))).reshape(512, 3, 3)
    centre = edge_magnitude(patches, name)[:, 1, 1]  # replicate padding does not touch the centre
    assert centre.max() == pytest.approx(1.0, abs=1e-12)
    assert centre.min() >= 0.0


def test_step_edge_value() -> None:
    x = np.zeros((8, 8))
    x[:, 4:] = 1.0
    m = edge_magnitude(x, "sobel")
    eps = 1e-6
    expected = (np.sqrt(16 + eps) - np.sqrt(eps)) / (np.sqrt(20 + eps) - np.sqrt(eps))
    np.testing.assert_allclose(m[:, 3:5], expected, rtol=1e-12)
    np.testing.assert_allclose(m[:, [0, 1, 2, 5, 6, 7]], 0.0, atol=1e-15)


@pytest.mark.parametrize("name", OPERATORS)
def test_gradient_is_finite_at_flat_maps_and_matches_finite_differences(name: str) -> None:
    flat = torch.full((1, 1, 6, 6), 0.5, dtype=torch.float64, requires_grad=True)
    edge_magnitude(flat, name).sum().backward()
    assert torch.all(torch.isfinite(flat.grad))
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.autograd.gradcheck(lambda t: edge_magnitude(t, name), (x.requires_grad_(),), eps=1e-7, atol=1e-6)


def test_unknown_operator_is_a_user_error() -> None:
    with pytest.raises(SalkitError, match="'canny'"):
        edge_magnitude(np.zeros((4, 4)), "canny")
