"""The fast loss grid of lab 03 (``landscape.loss_grid_batched``) computes the loop's grid.

``loss_grid_loop`` runs one plain forward pass per grid point; the batched
evaluator folds biases into products, combines layer 1 and the last layer from
three products each, reduces two classes to a logit difference and works in
blocks. Each of those paths is compared with the loop on tiny models: two and
three classes, a one-layer and a one-hidden-layer model, residual hidden layers
and a residual first layer, and block sizes that do not divide the number of
grid points. Directions are plain Gaussian draws (non-zero bias directions).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from landscape import init_mlp, loss_grid_batched, loss_grid_loop, random_direction

# float64: both evaluators round differently (products summed in another order), nothing else.
TOL64 = 1e-12
TOL32 = 1e-4
ALPHAS = np.linspace(-1.0, 1.0, 5)      # 5 x 3 = 15 grid points: not square, so swapped axes show
BETAS = np.linspace(-0.6, 0.9, 3)


def _case(sizes, skip, seed=3, n_samples=9):
    weights = init_mlp(sizes, seed, skip=skip)
    d_x, d_y = random_direction(weights, seed + 1), random_direction(weights, seed + 2)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, sizes[0]))
    y = rng.integers(0, sizes[-1], size=n_samples)
    y[:sizes[-1]] = np.arange(sizes[-1])          # every class present
    return weights, d_x, d_y, X, y


MODELS = [
    pytest.param((2, 6, 5, 2), False, id="two-classes"),
    pytest.param((3, 5, 5, 5, 4), True, id="four-classes-residual-hidden"),
    pytest.param((3, 3, 3, 2), True, id="residual-first-layer"),
    pytest.param((2, 6, 3), False, id="one-hidden-layer"),
    pytest.param((3, 3, 2), True, id="one-hidden-layer-residual"),
    pytest.param((4, 2), False, id="one-layer"),
]


@pytest.mark.parametrize("sizes, skip", MODELS)
@pytest.mark.parametrize("chunk_size", [None, 1, 4, 15, 64])
def test_batched_grid_equals_loop_float64(sizes, skip, chunk_size):
    """Block sizes 4 (15 = 3 x 4 + 3: a ragged last block), 1, exactly the grid, more than the grid."""
    weights, d_x, d_y, X, y = _case(sizes, skip)
    expected = loss_grid_loop(weights, d_x, d_y, X, y, ALPHAS, BETAS, skip=skip)
    got = loss_grid_batched(weights, d_x, d_y, X, y, ALPHAS, BETAS, skip=skip, chunk_size=chunk_size)
    assert got.shape == (BETAS.size, ALPHAS.size) and got.dtype == np.float64
    assert np.ptp(expected) > 1e-3, "the test grid should not be flat"
    err = np.max(np.abs(got - expected))
    assert np.allclose(got, expected, rtol=TOL64, atol=TOL64), \
        f"loss grid {sizes} skip={skip} chunk_size={chunk_size}: max |diff| {err:.2e} > {TOL64:.0e}"


@pytest.mark.parametrize("sizes, skip", [MODELS[0], MODELS[1]])
def test_batched_grid_equals_loop_float32(sizes, skip):
    weights, d_x, d_y, X, y = _case(sizes, skip)
    expected = loss_grid_loop(weights, d_x, d_y, X, y, ALPHAS, BETAS, skip=skip)
    got = loss_grid_batched(weights, d_x, d_y, X, y, ALPHAS, BETAS, skip=skip, chunk_size=4, dtype=torch.float32)
    err = np.max(np.abs(got - expected))
    assert np.allclose(got, expected, rtol=TOL32, atol=TOL32), f"float32 grid: max |diff| {err:.2e} > {TOL32:.0e}"


def test_blas_threads_restored():
    """The grid keeps numpy's BLAS on one thread while it runs, and gives the setting back."""
    before = [(info["filepath"], info["num_threads"]) for info in threadpool_info()]
    weights, d_x, d_y, X, y = _case((2, 6, 5, 2), False)
    loss_grid_batched(weights, d_x, d_y, X, y, ALPHAS, BETAS)
    assert [(info["filepath"], info["num_threads"]) for info in threadpool_info()] == before


@pytest.mark.parametrize("sizes, skip", [MODELS[0], MODELS[2]])
def test_batched_grid_on_two_threads(sizes, skip):
    """With two torch threads the blocks are shared between two workers: same grid, thread count restored."""
    weights, d_x, d_y, X, y = _case(sizes, skip)
    expected = loss_grid_loop(weights, d_x, d_y, X, y, ALPHAS, BETAS, skip=skip)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = loss_grid_batched(weights, d_x, d_y, X, y, ALPHAS, BETAS, skip=skip, chunk_size=4)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    err = np.max(np.abs(got - expected))
    assert np.allclose(got, expected, rtol=TOL64, atol=TOL64), f"two workers: max |diff| {err:.2e} > {TOL64:.0e}"
