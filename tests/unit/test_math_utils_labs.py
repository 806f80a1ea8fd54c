"""math_utils functions added by labs 02 and 03: test functions for optimizers, parameter flattening, grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import math_utils as mu

# Closed-form gradients against float64 autograd: rounding only.
AUTOGRAD_RTOL = 1e-12
# Central differences with eps = 1e-6 on these polynomials: ~1e-8 relative.
NUMERIC_RTOL = 1e-6

points = arrays(np.float64, st.tuples(st.integers(1, 4), st.just(2)),
                elements=st.floats(-3, 3, allow_nan=False, allow_infinity=False))


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(xy=points, a=st.floats(0.5, 2.0), b=st.floats(1.0, 200.0))
def test_rosenbrock_gradient_matches_autograd(xy, a, b):
    t = torch.tensor(xy, requires_grad=True)
    ((a - t[..., 0]) ** 2 + b * (t[..., 1] - t[..., 0] ** 2) ** 2).sum().backward()
    np.testing.assert_allclose(mu.rosenbrock_grad(xy, a, b), t.grad.numpy(), rtol=AUTOGRAD_RTOL, atol=1e-9)
    assert mu.rosenbrock(xy, a, b).shape == xy.shape[:-1]


def test_rosenbrock_minimum_is_zero_at_a_a_squared():
    assert mu.rosenbrock(np.array([1.5, 2.25]), a=1.5) == 0.0
    np.testing.assert_array_equal(mu.rosenbrock_grad(np.array([1.0, 1.0])), [0.0, 0.0])


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(xy=points, condition=st.floats(1.0, 100.0), angle=st.floats(-np.pi, np.pi))
def test_quadratic_bowl_gradient_and_conditioning(xy, condition, angle):
    for p in xy:
        numeric = mu.numerical_gradient(lambda q: float(mu.quadratic_bowl(q, condition, angle)), p)
        np.testing.assert_allclose(mu.quadratic_bowl_grad(p, condition, angle), numeric, rtol=NUMERIC_RTOL, atol=1e-6)
    # The Hessian's eigenvalues are 1 and `condition`: its condition number is what the name says.
    h = np.stack([mu.quadratic_bowl_grad(e, condition, angle) for e in np.eye(2)], axis=1)
    np.testing.assert_allclose(np.linalg.eigvalsh(h), sorted([1.0, condition]), rtol=1e-10)
    assert mu.quadratic_bowl(np.zeros(2), condition, angle) == 0.0


def test_flatten_and_unflatten_round_trip():
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(4, 2)), rng.normal(size=2)]
    flat = mu.flatten_params(params)
    assert flat.shape == (3 * 4 + 4 + 4 * 2 + 2,)
    back = mu.unflatten_params(flat, params)
    assert all(np.array_equal(a, b) and a.shape == b.shape for a, b in zip(back, params))
    back[0][0, 0] = 99.0
    assert flat[0] != 99.0, "pieces are copies, not views into the vector"
    with pytest.raises(ValueError):
        mu.unflatten_params(flat[:-1], params)


def test_grid_axes():
    axis = mu.grid_axes(5, span=2.0)
    np.testing.assert_array_equal(axis, [-2.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(mu.grid_axes(3, span=(0.0, 1.0)), [0.0, 0.5, 1.0])
    with pytest.raises(ValueError):
        mu.grid_axes(1)
